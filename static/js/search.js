// Search page: sends the form to the search API (session auth + CSRF) and renders the results.
(function () {
  const form = document.getElementById("search-form");
  if (!form) return;
  const status = document.getElementById("search-status");
  const results = document.getElementById("search-results");
  const fileInput = document.getElementById("q-image");
  const imageId = document.getElementById("q-image-id");
  const label = document.getElementById("q-image-label");
  const drop = document.getElementById("q-drop");
  let queryFile = null;
  // Several album photos as one query (the bar's "Search like these"): the mean of their vectors.
  // A long list waits in sessionStorage ("selection"): static/js/select.js.
  let queryIds = new URLSearchParams(location.search).get("image_ids") || "";
  if (queryIds === "selection") queryIds = sessionStorage.getItem("loupe-query-ids") || "";
  queryIds = queryIds.split(",").filter((id) => /^\d+$/.test(id));

  for (const name of ["image", "text", "negative"]) {
    const slider = document.getElementById(`w-${name}`);
    const out = document.getElementById(`w-${name}-out`);
    slider.addEventListener("input", () => { out.textContent = Number(slider.value).toFixed(2); });
  }

  // Regions albums: draw a box on the query image (fractions of its width and height).
  const picker = document.getElementById("box-picker");
  const boxInput = document.getElementById("q-box");
  function showPicker(src) {
    if (!picker) return;
    clearBox();
    picker.hidden = !src;
    if (src) document.getElementById("box-image").src = src;
  }
  function clearBox() {
    if (!picker) return;
    boxInput.value = "";
    document.getElementById("box-rect").hidden = true;
  }
  if (picker) {
    const stage = document.getElementById("box-stage");
    const rect = document.getElementById("box-rect");
    let start = null;
    const point = (e) => {
      const r = stage.getBoundingClientRect();
      return [Math.min(1, Math.max(0, (e.clientX - r.left) / r.width)), Math.min(1, Math.max(0, (e.clientY - r.top) / r.height))];
    };
    const draw = (a, b) => {
      const [x0, x1] = [Math.min(a[0], b[0]), Math.max(a[0], b[0])];
      const [y0, y1] = [Math.min(a[1], b[1]), Math.max(a[1], b[1])];
      Object.assign(rect.style, { left: `${x0 * 100}%`, top: `${y0 * 100}%`, width: `${(x1 - x0) * 100}%`, height: `${(y1 - y0) * 100}%` });
      rect.hidden = false;
      return [x0, y0, x1, y1];
    };
    stage.addEventListener("pointerdown", (e) => { start = point(e); stage.setPointerCapture(e.pointerId); });
    stage.addEventListener("pointermove", (e) => { if (start) draw(start, point(e)); });
    stage.addEventListener("pointerup", (e) => {
      if (!start) return;
      const box = draw(start, point(e));
      start = null;
      if (box[2] - box[0] < 0.02 || box[3] - box[1] < 0.02) { clearBox(); return; }  // a click, not a box
      boxInput.value = box.map((v) => v.toFixed(4)).join(",");
    });
    document.getElementById("box-clear").addEventListener("click", clearBox);
    if (imageId.value) showPicker(`/api/v1/images/${imageId.value}/file`);
  }

  const chip = document.getElementById("q-image-chip");
  const thumb = document.getElementById("q-image-thumb");
  function setFile(file) {
    if (!file) return;
    queryFile = file; imageId.value = ""; queryIds = []; label.textContent = file.name || "pasted image";
    const url = URL.createObjectURL(file);
    thumb.src = url; chip.hidden = false;
    showPicker(url);
    updateAdjust();
  }
  window.loupeImageInput(fileInput, drop, setFile);
  document.getElementById("q-image-clear").addEventListener("click", () => {
    queryFile = null; imageId.value = ""; queryIds = []; fileInput.value = ""; label.textContent = ""; chip.hidden = true;
    thumb.removeAttribute("src");
    showPicker(null);
    updateAdjust();
  });
  // An image handed over by the bar on another album page (static/js/searchbar.js).
  const carried = sessionStorage.getItem("loupe-query-image");
  if (carried) {
    sessionStorage.removeItem("loupe-query-image");
    try {
      const { name, data } = JSON.parse(carried);
      fetch(data).then((r) => r.blob()).then((blob) => {
        setFile(new File([blob], name, { type: blob.type }));
        form.requestSubmit();
      });
    } catch (e) { /* a damaged hand-over: the reader picks the image again */ }
  }

  // Adjust shows only what applies to the query as typed: weights once two parts combine, the
  // negative weight once there are negative words.
  function updateAdjust() {
    const hasText = Boolean(form.elements.text && !form.elements.text.disabled && form.elements.text.value.trim());
    const negative = form.elements.negative_text;
    const hasNegative = Boolean(negative && negative.value.trim());
    const hasImage = Boolean(queryFile || imageId.value || queryIds.length);
    const parts = [hasImage, hasText, hasNegative].filter(Boolean).length;
    document.getElementById("weights").hidden = parts < 2;
    document.getElementById("weight-image").hidden = !hasImage;
    document.getElementById("weight-text").hidden = !hasText;
    document.getElementById("weight-negative").hidden = !hasNegative;
  }
  for (const name of ["text", "negative_text"]) if (form.elements[name]) form.elements[name].addEventListener("input", updateAdjust);

  async function saveDefaults() {
    await fetch(form.dataset.settingsUrl, {
      method: "PATCH", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": form.dataset.csrf },
      body: JSON.stringify({
        min_search_score: Number(form.min_score.value),
        max_search_results: Number(form.max_results.value),
        use_query_optimization: form.use_query_optimization.checked,
      }),
    });
  }

  const more = document.getElementById("search-more");
  const lower = document.getElementById("search-lower");
  let lastQuery = null;  // the FormData of the search on screen, for its next pages
  // Answers can come back out of order (a quick second search, a next page still on its way): each
  // new search bumps the generation, and an answer to an older one is dropped, not drawn over it.
  let generation = 0;
  const busy = window.loupeBusyTracker(results);  // aria-busy while any answer is awaited

  // The same chips as the album grid's (templates/albums/_label_chips.html): rejected ones left out.
  function labelChips(labels) {
    const holder = document.createElement("span");
    holder.className = "label-chips";
    for (const item of labels) {
      if (item.state === "rejected") continue;
      const chip = document.createElement("span");
      chip.className = `label-chip ${item.state}`;
      chip.textContent = item.label;
      chip.title = `${item.label}: ${item.state}, margin ${item.margin}`;
      holder.appendChild(chip);
    }
    return holder;
  }

  function render(body, { append = false } = {}) {
    if (!append) results.innerHTML = "";
    const model = body.rebuilding ? ` (rebuild under way; using ${body.model_id})` : "";
    const shown = Math.min(body.count, body.page * body.page_size);
    const only = form.elements.only_label && form.elements.only_label.selectedOptions[0];
    const restricted = only && only.value ? ` labeled ${only.textContent}` : "";
    status.textContent = `${body.count} result${body.count === 1 ? "" : "s"}${restricted}${body.count > shown ? `, ${shown} shown` : ""} in ${body.timings_ms.total} ms${model}`;
    more.hidden = shown >= body.count;
    more.dataset.page = String(body.page + 1);
    // Nothing passed the minimum score: say so, and offer the ones below it.
    lower.hidden = !(body.count === 0 && body.min_score > -1);
    if (!lower.hidden) {
      status.textContent = `No image scored at least ${body.min_score.toFixed(4)} (the minimum score).`;
    }
    for (const r of body.results) {
      const li = document.createElement("li");
      li.className = "tile photo";
      li.dataset.id = String(r.image_id);
      let parts = Object.entries(r.cosines).map(([k, v]) => `${k} ${v.toFixed(4)}`).join(" · ");
      if (r.region) parts += ` · best region row ${r.region.row + 1}, col ${r.region.col + 1}`;
      li.title = `${r.original_name} · ${parts}`;
      li.innerHTML = `<a class="open"><img alt="" loading="lazy"></a><input class="pick" type="checkbox">` +
        `<span class="score"></span><small class="meta cosines"></small>`;
      const link = li.querySelector("a");
      link.href = `/images/${r.image_id}/`;
      Object.assign(link.dataset, { src: r.file_url, width: r.width || "", height: r.height || "", name: r.original_name });
      const img = li.querySelector("img");
      img.src = r.thumbnail_url; img.alt = r.original_name;
      li.querySelector(".pick").setAttribute("aria-label", `Select ${r.original_name}`);
      li.querySelector(".score").textContent = r.score.toFixed(4);
      li.insertBefore(labelChips(r.labels || []), li.querySelector(".cosines"));
      // Each part's cosine, where the score combines more than one.
      if (Object.keys(r.cosines).length > 1 || r.region) li.querySelector(".cosines").textContent = parts;
      // Region search: the cell that matched, drawn on the whole (uncropped) thumbnail.
      if (r.region && body.region_grid) {
        link.classList.add("boxed", "whole");
        const box = document.createElement("span");
        box.className = "box";
        const { rows, cols } = body.region_grid;
        Object.assign(box.style, { left: `${(r.region.col / cols) * 100}%`, top: `${(r.region.row / rows) * 100}%`,
                                   width: `${100 / cols}%`, height: `${100 / rows}%` });
        link.appendChild(box);
      }
      results.appendChild(li);
    }
    if (window.loupeSelectionChanged) window.loupeSelectionChanged();
  }

  async function fetchPage(data, page) {
    const sent = new FormData();
    for (const [key, value] of data.entries()) sent.append(key, value);
    sent.set("page", String(page));
    sent.set("page_size", form.dataset.pageSize || "50");
    const response = await fetch(form.dataset.url, {
      method: "POST", body: sent, credentials: "same-origin", headers: { "X-CSRFToken": form.dataset.csrf },
    });
    return [response, await response.json()];
  }

  // The query in the address (words and an album image; an uploaded file cannot travel there), so
  // Back from a photo and a reload find the same results.
  const REMEMBERED = ["text", "negative_text", "image_id", "image_weight", "text_weight", "negative_weight", "min_score",
                      "max_results", "only_label"];
  function remember(data) {
    const params = new URLSearchParams();
    for (const name of REMEMBERED) if (data.get(name)) params.set(name, data.get(name));
    const only = form.elements.only_label;
    if (only && only.value) params.set("only_label", only.value);
    const ids = data.getAll("image_ids").join(",");
    if (ids) params.set("image_ids", ids.length > 2000 ? "selection" : ids);
    history.replaceState(null, "", params.toString() ? `?${params}` : location.pathname);
  }

  more.onclickAsync = () => busy(async () => {
    if (!lastQuery || more.disabled) return;
    const asked = generation;
    more.disabled = true;
    try {
      const [response, body] = await fetchPage(lastQuery, Number(more.dataset.page));
      if (response.ok && asked === generation) render(body, { append: true });
    } finally { more.disabled = false; }
  });
  more.addEventListener("click", () => more.onclickAsync());
  // Endless: the next page comes when the button scrolls into view.
  if ("IntersectionObserver" in window) {
    new IntersectionObserver((entries) => { if (entries.some((e) => e.isIntersecting) && !more.hidden) more.click(); })
      .observe(more);
  }
  // "Select all" selects every result, not only the pages on screen.
  window.loupeLoadAll = async function () {
    while (lastQuery && !more.hidden) {
      const before = results.children.length;
      await more.onclickAsync();
      if (results.children.length === before) break;
    }
  };
  lower.addEventListener("click", () => {
    form.elements.min_score.value = "-1";
    form.requestSubmit();
  });

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    busy(() => search());
  });
  async function search() {
    const asked = ++generation;
    const data = new FormData();
    for (const name of ["text", "negative_text", "image_weight", "text_weight", "negative_weight", "min_score", "max_results"]) {
      const field = form.elements[name];
      if (field && !field.disabled && field.value !== "") data.append(name, field.value);
    }
    data.append("use_query_optimization", form.use_query_optimization.checked ? "true" : "false");
    if (queryFile) data.append("image", queryFile);
    else if (imageId.value) data.append("image_id", imageId.value);
    else for (const id of queryIds) data.append("image_ids", id);
    // "Only label": candidates are the images a support set labeled so (the API's `label`, as JSON
    // in the form); reviewed only = accepted or corrected, else predictions count too.
    const only = form.elements.only_label;
    if (only && only.value) {
      const at = only.value.indexOf(":");
      const label = { support_set: Number(only.value.slice(0, at)), label: only.value.slice(at + 1) };
      if (document.getElementById("only-reviewed").checked) label.states = ["accepted", "corrected"];
      data.append("label", JSON.stringify(label));
    }
    if (boxInput && boxInput.value && (queryFile || imageId.value)) {
      data.append("box", boxInput.value);
      data.delete("text"); data.delete("negative_text");  // a box query matches image regions only
    }
    status.textContent = "Searching…";
    const save = document.getElementById("save-defaults");
    if (save && save.checked) await saveDefaults();
    const [response, body] = await fetchPage(data, 1);
    if (asked !== generation) return;
    if (!response.ok) { results.innerHTML = ""; more.hidden = lower.hidden = true; status.textContent = body.message; return; }
    lastQuery = data;
    remember(data);
    render(body);
  }
  const fromAddress = new URLSearchParams(location.search);
  for (const name of REMEMBERED) {
    const field = form.elements[name];
    if (field && !field.disabled && field.type !== "hidden" && fromAddress.get(name)) {
      field.value = fromAddress.get(name);
      field.dispatchEvent(new Event("input"));  // the sliders' read-outs follow
    }
  }
  if (queryIds.length && !imageId.value) {
    label.textContent = `${queryIds.length} photo${queryIds.length === 1 ? "" : "s"}`;
    thumb.src = `/api/v1/images/${queryIds[0]}/thumbnail`;
    chip.hidden = false;
  }
  updateAdjust();
  // A restriction from the address is in force: show where it is set.
  if (form.elements.only_label && form.elements.only_label.value) document.getElementById("adjust").open = true;
  if (fromAddress.get("pick")) status.textContent = "That image was too large to carry over: choose it here with the camera button.";
  if (window.loupeViewer) window.loupeViewer.attach(results);
  if (!carried && (imageId.value || queryIds.length || (form.elements.text && form.elements.text.value))) form.requestSubmit();
})();
