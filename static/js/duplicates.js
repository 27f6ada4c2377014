// Near-duplicates: groups from the API (or from a scan job when the album is too large to answer in
// a request), each a small grid in the viewer and the selection. "Keep best" selects every member
// but the one with the most pixels (then the largest file), ready for Delete in the selection bar.
(function () {
  const form = document.getElementById("dup-form");
  if (!form) return;
  const status = document.getElementById("dup-status");
  const out = document.getElementById("dup-groups");
  const actions = document.getElementById("dup-actions");
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  const jobUrl = (id) => `/api/v1/jobs/${id}/`;
  const quality = (m) => [(m.width || 0) * (m.height || 0), m.bytes || 0];
  const better = (a, b) => { const [qa, qb] = [quality(a), quality(b)]; return qa[0] !== qb[0] ? qa[0] > qb[0] : qa[1] > qb[1]; };

  async function scan(threshold) {
    const response = await fetch(form.dataset.url, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": form.dataset.csrf },
      body: JSON.stringify({ threshold: Number(threshold) }),
    });
    let job = await response.json();
    if (!response.ok) return { error: job.message };
    while (job.status === "queued" || job.status === "running") {
      status.textContent = job.status === "queued" ? "Waiting for a worker…" : `Comparing: ${job.done} of ${job.total} images`;
      await sleep(1000);
      job = await (await fetch(jobUrl(job.id), { credentials: "same-origin" })).json();
    }
    return job.status === "succeeded" ? { body: job.result } : { error: job.message || `The scan ${job.status}.` };
  }

  function selectAllBut(keep, group) {
    for (const m of group) {
      const tile = out.querySelector(`.tile[data-id="${m.image_id}"]`);
      const box = tile && tile.querySelector(".pick");
      if (box && (m.image_id === keep.image_id) === box.checked) box.click();  // the selection's own handler
    }
  }

  function show(body) {
    status.textContent = `${body.total} group${body.total === 1 ? "" : "s"} of near-duplicates`
      + (body.truncated ? ` (the ${body.count} largest shown; raise the threshold to see the rest)` : "");
    actions.hidden = !body.groups.length;
    body.groups.forEach((group, n) => {
      const best = group.reduce((a, b) => (better(b, a) ? b : a));
      const section = document.createElement("section");
      section.className = "card dup-group";
      const head = document.createElement("p");
      head.className = "row";
      const title = document.createElement("strong");
      title.textContent = `Group ${n + 1} · ${group.length} photos`;
      const keep = document.createElement("button");
      keep.type = "button"; keep.className = "link"; keep.textContent = "Keep best, select the others";
      keep.addEventListener("click", () => selectAllBut(best, group));
      head.append(title, keep);
      const ul = document.createElement("ul");
      ul.className = "photo-grid";
      for (const m of group) {
        const li = document.createElement("li");
        li.className = "tile photo";
        li.dataset.id = String(m.image_id);
        // Built node by node: a file name is the uploader's text, never markup.
        const link = document.createElement("a");
        link.className = "open"; link.href = `/images/${m.image_id}/`;
        Object.assign(link.dataset, { src: `/api/v1/images/${m.image_id}/file`, width: m.width || "", height: m.height || "", name: m.name || "" });
        const img = document.createElement("img");
        img.src = `/api/v1/images/${m.image_id}/thumbnail`; img.alt = m.name || ""; img.loading = "lazy";
        link.appendChild(img);
        const pick = document.createElement("input");
        pick.type = "checkbox"; pick.className = "pick"; pick.setAttribute("aria-label", `Select ${m.name || m.image_id}`);
        const name = document.createElement("span");
        name.className = "name"; name.textContent = m.name || "";
        const facts = document.createElement("small");
        facts.className = "meta";
        facts.textContent = `${m.similarity.toFixed(4)}${m.width ? ` · ${m.width}×${m.height}` : ""}${m === best ? " · best" : ""}`;
        facts.title = "similarity to its closest match in this group · size";
        li.append(link, pick, name, facts);
        if (m === best) li.classList.add("best");
        ul.appendChild(li);
      }
      section.append(head, ul);
      out.appendChild(section);
    });
    if (window.loupeSelectionChanged) window.loupeSelectionChanged();
  }
  document.getElementById("dup-keep-best-all").addEventListener("click", () => {
    for (const section of out.querySelectorAll(".dup-group")) section.querySelector(".row button").click();
  });
  document.addEventListener("loupe:deleted", () => {
    for (const section of out.querySelectorAll(".dup-group")) if (section.querySelectorAll(".tile").length < 2) section.remove();
  });

  async function run(e) {
    if (e) e.preventDefault();
    status.textContent = "Looking…";
    const threshold = form.threshold.value;
    const response = await fetch(`${form.dataset.url}?threshold=${encodeURIComponent(threshold)}`, { credentials: "same-origin" });
    let body = await response.json();
    out.innerHTML = "";
    if (response.status === 409 && body.extra && body.extra.scan) {
      const scanned = await scan(threshold);
      if (scanned.error) { status.textContent = scanned.error; return; }
      body = scanned.body;
    } else if (!response.ok) { status.textContent = body.message; return; }
    show(body);
  }
  form.addEventListener("submit", run);
  if (window.loupeViewer) window.loupeViewer.attach(out);
  run();
})();
