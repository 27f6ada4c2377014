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

  function setFile(file) {
    if (!file) return;
    queryFile = file; imageId.value = ""; label.textContent = file.name || "pasted image";
    showPicker(URL.createObjectURL(file));
  }
  window.loupeImageInput(fileInput, drop, setFile);
  document.getElementById("q-image-clear").addEventListener("click", () => {
    queryFile = null; imageId.value = ""; fileInput.value = ""; label.textContent = "Drop, paste or choose an image";
    showPicker(null);
  });

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

  function render(body) {
    results.innerHTML = "";
    const model = body.rebuilding ? ` (rebuild under way; using ${body.model_id})` : "";
    status.textContent = `${body.count} result${body.count === 1 ? "" : "s"} in ${body.timings_ms.total} ms${model}`;
    for (const r of body.results) {
      const li = document.createElement("li");
      li.className = "tile";
      let parts = Object.entries(r.cosines).map(([k, v]) => `${k} ${v.toFixed(4)}`).join(" · ");
      if (r.region) parts += ` · best region row ${r.region.row + 1}, col ${r.region.col + 1}`;
      li.title = parts;
      li.innerHTML = `<a href="/images/${r.image_id}/"><img src="${r.thumbnail_url}" alt="" loading="lazy"></a>` +
        `<span class="score">${r.score.toFixed(4)}</span><span class="name"></span><small class="meta">${parts}</small>`;
      li.querySelector(".name").textContent = r.original_name;
      results.appendChild(li);
    }
  }

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const data = new FormData();
    for (const name of ["text", "negative_text", "image_weight", "text_weight", "negative_weight", "min_score", "max_results"]) {
      const field = form.elements[name];
      if (field && !field.disabled && field.value !== "") data.append(name, field.value);
    }
    data.append("use_query_optimization", form.use_query_optimization.checked ? "true" : "false");
    if (queryFile) data.append("image", queryFile);
    else if (imageId.value) data.append("image_id", imageId.value);
    if (boxInput && boxInput.value && (queryFile || imageId.value)) {
      data.append("box", boxInput.value);
      data.delete("text"); data.delete("negative_text");  // a box query matches image regions only
    }
    status.textContent = "Searching…";
    const save = document.getElementById("save-defaults");
    if (save && save.checked) await saveDefaults();
    const response = await fetch(form.dataset.url, {
      method: "POST", body: data, credentials: "same-origin", headers: { "X-CSRFToken": form.dataset.csrf },
    });
    const body = await response.json();
    if (!response.ok) { results.innerHTML = ""; status.textContent = body.message; return; }
    render(body);
  });
  if (imageId.value) form.requestSubmit();
})();
