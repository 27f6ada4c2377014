// Multi-file upload with progress: files go to the API in small batches so one slow or bad
// file never holds up the rest, and every file gets its own result line.
(function () {
  const section = document.getElementById("upload");
  if (!section) return;
  const input = section.querySelector("input[type=file]");
  const zone = section.querySelector(".dropzone");
  const bar = document.getElementById("upload-progress");
  const summary = document.getElementById("upload-summary");
  const list = document.getElementById("upload-results");
  const BATCH = 8;

  function send(files) {
    return new Promise((resolve) => {
      const form = new FormData();
      files.forEach((f) => form.append("files", f, f.name));
      const xhr = new XMLHttpRequest();
      xhr.open("POST", section.dataset.url);
      xhr.setRequestHeader("X-CSRFToken", section.dataset.csrf);
      xhr.responseType = "json";
      xhr.upload.onprogress = (e) => { if (e.lengthComputable) bar.dataset.current = e.loaded / e.total; render(); };
      xhr.onload = () => {
        const body = xhr.response || {};
        if (xhr.status >= 200 && xhr.status < 300) resolve(body.results);
        else resolve(files.map((f) => ({ name: f.name, status: "rejected", reason: body.message || `HTTP ${xhr.status}` })));
      };
      xhr.onerror = () => resolve(files.map((f) => ({ name: f.name, status: "rejected", reason: "network error" })));
      xhr.send(form);
    });
  }

  let total = 0, sent = 0;
  function render() {
    const current = parseFloat(bar.dataset.current || "0");
    bar.value = total ? Math.round(((sent + current * BATCH) / total) * 100) : 0;
  }

  function show(result) {
    const li = document.createElement("li");
    li.className = result.status;
    li.textContent = `${result.name}: ${result.status}${result.reason ? " — " + result.reason : ""}`;
    list.appendChild(li);
  }

  async function upload(fileList) {
    const files = Array.from(fileList);
    if (!files.length) return;
    total = files.length; sent = 0; list.innerHTML = ""; bar.hidden = false;
    const counts = { created: 0, duplicate: 0, rejected: 0 };
    for (let i = 0; i < files.length; i += BATCH) {
      bar.dataset.current = "0";
      const results = await send(files.slice(i, i + BATCH));
      results.forEach((r) => { counts[r.status] = (counts[r.status] || 0) + 1; show(r); });
      sent = Math.min(files.length, i + BATCH);
      render();
      summary.textContent = `${sent} of ${total} sent · ${counts.created} added, ${counts.duplicate} duplicates, ${counts.rejected} rejected`;
    }
    bar.value = 100;
    if (window.htmx) htmx.ajax("GET", window.location.pathname, { target: "#grid" });
    if (window.loupeWatchIndex) window.loupeWatchIndex();
  }

  input.addEventListener("change", () => upload(input.files));
  ["dragenter", "dragover"].forEach((t) => zone.addEventListener(t, (e) => { e.preventDefault(); zone.classList.add("over"); }));
  ["dragleave", "drop"].forEach((t) => zone.addEventListener(t, (e) => { e.preventDefault(); zone.classList.remove("over"); }));
  zone.addEventListener("drop", (e) => upload(e.dataTransfer.files));
})();
