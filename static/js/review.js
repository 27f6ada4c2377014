// Review page of a support set's labels: start a labeling job, then go through the labels lowest
// margin first with the keyboard. Everything goes through the labeling API (session cookie + CSRF).
(function () {
  const page = document.getElementById("review-page");
  if (!page) return;
  const csrf = page.dataset.csrf;
  const canEdit = page.dataset.canEdit === "1";
  const classes = JSON.parse(document.getElementById("review-classes").textContent);
  const list = document.getElementById("review-list");
  const status = document.getElementById("review-status");
  const more = document.getElementById("review-more");
  const filters = document.getElementById("label-filters");
  let items = [];
  let current = -1;
  let next = null;

  async function api(url, options = {}) {
    const response = await fetch(url, {
      credentials: "same-origin",
      ...options,
      headers: { "X-CSRFToken": csrf, "Content-Type": "application/json", ...(options.headers || {}) },
    });
    const body = response.status === 204 ? {} : await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(body.message || `HTTP ${response.status}`);
    return body;
  }

  function el(tag, attrs = {}, text = "") {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text) node.textContent = text;
    return node;
  }

  function render(label, li) {
    li.replaceChildren();
    li.className = "review-item card" + (items[current]?.id === label.id ? " current" : "");
    li.dataset.id = label.id;
    li.append(el("img", { src: label.thumbnail_url, alt: label.file_name, loading: "lazy" }));
    const body = el("div");
    const head = el("p");
    head.append(el("strong", {}, label.class_label), " ",
      el("span", { class: `badge ${label.state}` }, label.state), " ",
      el("span", { class: "meta" }, `margin ${label.margin.toFixed(3)} · ${label.source} · ${label.file_name}`));
    if (label.state === "corrected") head.append(el("span", { class: "meta" }, ` (predicted ${label.predicted_label})`));
    body.append(head);
    const bars = el("ul", { class: "bars" });
    for (const [name, score] of Object.entries(label.scores).sort((a, b) => b[1] - a[1])) {
      const row = el("li");
      const bar = el("span", { class: "bar" });
      const fill = el("span");
      fill.style.width = `${(score * 100).toFixed(1)}%`;
      bar.append(fill);
      row.append(el("span", { class: name === label.class_label ? "win" : "" }, `${classes.indexOf(name) + 1} ${name}`), bar,
        el("span", {}, score.toFixed(3)));
      bars.append(row);
    }
    body.append(bars);
    if (label.evidence?.length) {
      const evidence = el("div", { class: "evidence" });
      for (const item of label.evidence) {
        const figure = el("figure");
        figure.append(el("img", { src: `${item.crop_url}&size=128`, alt: `best ${item.label} patch`, loading: "lazy" }),
          el("figcaption", {}, `${item.label} ${item.similarity.toFixed(2)}`));
        evidence.append(figure);
      }
      body.append(evidence);
    }
    if (label.explanation) body.append(el("p", { class: "meta" }, label.explanation));
    if (canEdit) {
      const actions = el("div", { class: "actions" });
      const button = (text, action) => {
        const b = el("button", { type: "button" }, text);
        b.addEventListener("click", () => { select(items.findIndex((x) => x.id === label.id)); action(); });
        actions.append(b);
      };
      button("Accept (A)", () => review({ state: "accepted" }));
      button("Reject (R)", () => review({ state: "rejected" }));
      classes.forEach((name, i) => { if (i < 9) button(`${i + 1} ${name}`, () => review({ class_label: name })); });
      button("Add to set (E)", addToSet);
      body.append(actions);
    }
    li.append(body);
  }

  function select(index) {
    if (!items.length) return;
    current = Math.max(0, Math.min(items.length - 1, index));
    list.querySelectorAll(".review-item").forEach((li, i) => li.classList.toggle("current", i === current));
    list.children[current]?.scrollIntoView({ block: "nearest" });
  }

  async function load(url, append) {
    status.textContent = "Loading…";
    try {
      const body = await api(url);
      if (!append) { items = []; list.replaceChildren(); current = -1; }
      for (const label of body.results) {
        items.push(label);
        const li = el("li");
        list.append(li);
        render(label, li);
      }
      next = body.next;
      more.hidden = !next;
      status.textContent = `${body.count} label${body.count === 1 ? "" : "s"}` + (body.count ? "" : ": start a labeling job, or change the filters.");
      if (current < 0 && items.length) select(0);
    } catch (err) {
      status.textContent = err.message;
    }
  }

  // The filters live in the address too (a job started from a selection links here with ?job=…),
  // so a reload or a shared link shows the same labels.
  const fromAddress = new URLSearchParams(location.search);
  for (const field of filters.elements) {
    if (!field.name || !fromAddress.has(field.name)) continue;
    if (field.tagName === "SELECT" && ![...field.options].some((o) => o.value === fromAddress.get(field.name))) {
      field.append(new Option(`job #${fromAddress.get(field.name)}`, fromAddress.get(field.name)));
    }
    field.value = fromAddress.get(field.name);
  }
  function filtered() {
    const params = new URLSearchParams({ page_size: "50" });
    const address = new URLSearchParams();
    for (const [k, v] of new FormData(filters)) {
      params.set(k, v);
      if (!v) params.delete(k);
      address.set(k, v);
    }
    history.replaceState(null, "", `?${address}`);
    return `${page.dataset.labelsUrl}?${params}`;
  }

  async function review(change) {
    const label = items[current];
    if (!label || !canEdit) return;
    try {
      const updated = await api(`${page.dataset.labelUrl}${label.id}/`, { method: "PATCH", body: JSON.stringify(change) });
      items[current] = updated;
      render(updated, list.children[current]);
      status.textContent = `${updated.file_name}: ${updated.state} as ${updated.class_label}`;
      select(current + 1);
    } catch (err) {
      status.textContent = err.message;
    }
  }

  async function addToSet() {
    const label = items[current];
    if (!label || !canEdit) return;
    try {
      const body = await api(`${page.dataset.labelUrl}${label.id}/add-to-set/`, { method: "POST" });
      status.textContent = body.added ? `${label.file_name} is now an example of ${label.class_label}.`
        : (body.results[0]?.reason || "Already an example.");
    } catch (err) {
      status.textContent = err.message;
    }
  }

  filters.addEventListener("submit", (e) => { e.preventDefault(); load(filtered(), false); });
  more.addEventListener("click", () => next && load(next, true));
  document.addEventListener("keydown", (e) => {
    if (e.target.closest("input, select, textarea") || e.ctrlKey || e.metaKey || e.altKey) return;
    const key = e.key.toLowerCase();
    if (key === "j") select(current + 1);
    else if (key === "k") select(current - 1);
    else if (key === "a") review({ state: "accepted" });
    else if (key === "r") review({ state: "rejected" });
    else if (key === "e") addToSet();
    else if (/^[1-9]$/.test(key) && classes[Number(key) - 1]) review({ class_label: classes[Number(key) - 1] });
    else return;
    e.preventDefault();
  });

  // --- the labeling job ------------------------------------------------------------------------
  const jobForm = document.getElementById("label-job");
  if (jobForm) {
    const bar = document.getElementById("job-progress");
    const jobStatus = document.getElementById("job-status");
    const cancel = document.getElementById("job-cancel");
    let jobId = null;

    async function poll() {
      if (!jobId) return;
      try {
        const job = await api(`${page.dataset.jobUrl}${jobId}/`);
        bar.hidden = false;
        bar.max = job.total || 1;
        bar.value = job.done;
        const rate = job.rate ? ` · ${job.rate.toFixed(1)} images/s` : "";
        jobStatus.textContent = `${job.status}: ${job.done} of ${job.total}` + (job.failed ? `, ${job.failed} failed` : "") + rate
          + (job.message ? ` · ${job.message}` : "");
        cancel.hidden = !["queued", "running"].includes(job.status);
        if (["queued", "running"].includes(job.status)) setTimeout(poll, 1000);
        else load(filtered(), false);
      } catch (err) {
        jobStatus.textContent = err.message;
      }
    }

    jobForm.addEventListener("submit", async (e) => {
      e.preventDefault();
      const threshold = jobForm.margin_threshold.value;
      const body = { scope: "album", relabel: jobForm.relabel.checked, margin_threshold: threshold === "" ? null : Number(threshold) };
      try {
        const job = await api(page.dataset.jobsUrl, { method: "POST", body: JSON.stringify(body) });
        jobId = job.id;
        poll();
      } catch (err) {
        jobStatus.textContent = err.message;
      }
    });
    cancel.addEventListener("click", async () => {
      if (!jobId) return;
      try {
        await api(`${page.dataset.jobUrl}${jobId}/cancel/`, { method: "POST" });
        poll();
      } catch (err) {
        jobStatus.textContent = err.message;
      }
    });
  }

  load(filtered(), false);
})();
