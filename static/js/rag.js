// Support-set and classify pages: talk to the API with the session cookie and CSRF token.
(function () {
  const csrf = (document.getElementById("rag-page") || document.getElementById("classify-form") || {}).dataset?.csrf;

  async function api(url, options = {}) {
    const response = await fetch(url, {
      credentials: "same-origin",
      ...options,
      headers: { "X-CSRFToken": csrf, ...(options.headers || {}) },
    });
    const body = response.status === 204 ? {} : await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(body.message || `HTTP ${response.status}`);
    return body;
  }

  // --- support set page: add examples, remove examples and classes ---------------------------
  document.querySelectorAll("form.support-upload").forEach((form) => {
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const status = form.querySelector(".upload-status");
      const data = new FormData();
      for (const file of form.files.files) data.append("files", file);
      for (const id of form.image_ids.value.split(/[\s,]+/).filter(Boolean)) data.append("image_ids", id);
      status.textContent = "Adding…";
      try {
        const body = await api(form.dataset.url, { method: "POST", body: data });
        const rejected = body.results.filter((r) => r.status === "rejected");
        status.textContent = `${body.added} added` + (rejected.length ? `; ${rejected.map((r) => `${r.name}: ${r.reason}`).join("; ")}` : "");
        if (body.added) setTimeout(() => window.location.reload(), rejected.length ? 2500 : 300);
      } catch (err) {
        status.textContent = err.message;
      }
    });
  });
  document.querySelectorAll("[data-delete-url]").forEach((button) => {
    button.addEventListener("click", async () => {
      if (button.dataset.confirm && !window.confirm(button.dataset.confirm)) return;
      try {
        await api(button.dataset.deleteUrl, { method: "DELETE" });
        window.location.reload();
      } catch (err) {
        window.alert(err.message);
      }
    });
  });

  // --- classify page ----------------------------------------------------------------------------
  const form = document.getElementById("classify-form");
  if (!form) return;
  const status = document.getElementById("classify-status");
  const input = document.getElementById("c-image");
  const drop = document.getElementById("c-drop");
  const label = document.getElementById("c-image-label");
  const preview = document.getElementById("c-preview");
  let queryFile = null;

  function setFile(file) {
    if (!file) return;
    queryFile = file;
    label.textContent = file.name || "pasted image";
    preview.src = URL.createObjectURL(file);
    preview.hidden = false;
  }
  window.loupeImageInput(input, drop, setFile);

  function boxOverlay(img, item) {
    const [x0, y0, x1, y1] = item.box;
    const div = document.createElement("div");
    div.className = "box" + (item.sent_to_vlm ? " sent" : "");
    div.title = `${item.label} · similarity ${item.similarity.toFixed(4)}`;
    const place = () => {
      const w = img.naturalWidth, h = img.naturalHeight;
      Object.assign(div.style, { left: `${(100 * x0) / w}%`, top: `${(100 * y0) / h}%`, width: `${(100 * (x1 - x0)) / w}%`, height: `${(100 * (y1 - y0)) / h}%` });
    };
    if (img.complete && img.naturalWidth) place(); else img.addEventListener("load", place);
    return div;
  }

  function renderEvidence(body) {
    const root = document.getElementById("evidence");
    root.innerHTML = "";
    for (const cls of body.classes) {
      const items = body.evidence.filter((e) => e.class_id === cls.id);
      const section = document.createElement("section");
      section.className = "evidence-class";
      section.dataset.class = cls.label;
      section.innerHTML = `<h4></h4><div class="crops"></div><div class="evidence-images"></div>`;
      section.querySelector("h4").textContent = `${cls.label} — mean similarity ${cls.raw_score.toFixed(4)}`;
      const crops = section.querySelector(".crops");
      for (const item of items) {
        const fig = document.createElement("figure");
        fig.innerHTML = `<img alt="" loading="lazy"><figcaption></figcaption>`;
        fig.querySelector("img").src = item.crop_url;
        fig.querySelector("figcaption").textContent = item.similarity.toFixed(4) + (item.sent_to_vlm ? " · sent" : "");
        crops.appendChild(fig);
      }
      // Each support image once, with every evidence patch of it outlined.
      const images = section.querySelector(".evidence-images");
      const byImage = new Map();
      for (const item of items) {
        if (!byImage.has(item.image_id)) byImage.set(item.image_id, []);
        byImage.get(item.image_id).push(item);
      }
      for (const [, group] of byImage) {
        const wrap = document.createElement("div");
        wrap.className = "boxed";
        const img = document.createElement("img");
        img.alt = `support image of ${cls.label}`;
        img.src = group[0].file_url;
        wrap.appendChild(img);
        for (const item of group) wrap.appendChild(boxOverlay(img, item));
        images.appendChild(wrap);
      }
      root.appendChild(section);
    }
  }

  function render(body) {
    const decision = body.decision;
    document.getElementById("classify-result").hidden = false;
    document.getElementById("decision-flag").textContent = decision.flag ?? "(the model named no class)";
    document.getElementById("decision-source").textContent = decision.source === "vlm" ? `decided by ${decision.vlm}` : "retrieval only";
    document.getElementById("decision-explanation").textContent = decision.explanation || "";
    document.getElementById("decision-raw").textContent = decision.raw_response || "(none)";
    const bars = document.getElementById("class-scores");
    bars.innerHTML = "";
    const top = Math.max(...body.classes.map((c) => c.score));
    for (const c of body.classes) {
      const li = document.createElement("li");
      li.dataset.class = c.label;
      li.innerHTML = `<span class="label"></span><span class="bar"><span></span></span><span class="value"></span>`;
      li.querySelector(".label").textContent = c.label;
      li.querySelector(".bar span").style.width = `${(100 * c.score).toFixed(1)}%`;
      li.querySelector(".value").textContent = c.score.toFixed(4);
      if (c.score === top) li.classList.add("win");
      bars.appendChild(li);
    }
    renderEvidence(body);
    const extra = decision.vlm_error ? ` The model failed: ${decision.vlm_error.message}` : "";
    status.textContent = `Classified in ${body.timings_ms.total} ms (${body.query.patches} query patches, ${body.patch_source}).${extra}`;
  }

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    if (!queryFile) { status.textContent = "Choose a query image first."; return; }
    const data = new FormData();
    data.append("image", queryFile);
    for (const name of ["k", "max_patches_per_class", "temperature", "max_new_tokens", "user_prompt"]) {
      const field = form.elements[name];
      if (field && !field.disabled && field.value !== "") data.append(name, field.value);
    }
    status.textContent = "Classifying…";
    try {
      render(await api(form.dataset.url, { method: "POST", body: data }));
    } catch (err) {
      status.textContent = err.message;
    }
  });
})();
