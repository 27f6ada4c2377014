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

  function setFile(file) {
    if (!file) return;
    queryFile = file; imageId.value = ""; label.textContent = file.name || "pasted image";
  }
  fileInput.addEventListener("change", () => setFile(fileInput.files[0]));
  ["dragenter", "dragover"].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.add("over"); }));
  ["dragleave", "drop"].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.remove("over"); }));
  drop.addEventListener("drop", (e) => setFile(e.dataTransfer.files[0]));
  document.addEventListener("paste", (e) => {
    const item = Array.from(e.clipboardData.items).find((i) => i.type.startsWith("image/"));
    if (item) setFile(item.getAsFile());
  });
  document.getElementById("q-image-clear").addEventListener("click", () => {
    queryFile = null; imageId.value = ""; fileInput.value = ""; label.textContent = "Drop, paste or choose an image";
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
      const parts = Object.entries(r.cosines).map(([k, v]) => `${k} ${v.toFixed(4)}`).join(" · ");
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
