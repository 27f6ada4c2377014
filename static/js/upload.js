// Upload: the Upload button or photos dropped anywhere on the album page; one request per file,
// three at a time, each with its own progress bar and result line (created, duplicate, or rejected
// with the reason) folded under the summary. One bad or slow file never holds up the rest.
(function () {
  const section = document.getElementById("upload");
  if (!section) return;
  const input = document.getElementById("files");
  const bar = document.getElementById("upload-progress");
  const summary = document.getElementById("upload-summary");
  const list = document.getElementById("upload-results");
  const PARALLEL = 3;

  function row(file) {
    const li = document.createElement("li");
    li.innerHTML = '<span class="file-name"></span> <progress max="100" value="0"></progress> <span class="file-result">waiting</span>';
    li.querySelector(".file-name").textContent = file.name;
    list.appendChild(li);
    return li;
  }

  function send(file, li) {
    return new Promise((resolve) => {
      const form = new FormData();
      form.append("files", file, file.name);
      const xhr = new XMLHttpRequest();
      const progress = li.querySelector("progress");
      xhr.open("POST", section.dataset.url);
      xhr.setRequestHeader("X-CSRFToken", section.dataset.csrf);
      xhr.responseType = "json";
      xhr.upload.onprogress = (e) => { if (e.lengthComputable) progress.value = Math.round((e.loaded / e.total) * 100); };
      xhr.onload = () => {
        const body = xhr.response || {};
        if (xhr.status >= 200 && xhr.status < 300) resolve(body.results[0]);
        else resolve({ name: file.name, status: "rejected", reason: body.message || `HTTP ${xhr.status}` });
      };
      xhr.onerror = () => resolve({ name: file.name, status: "rejected", reason: "network error" });
      xhr.send(form);
    });
  }

  async function upload(fileList) {
    const files = Array.from(fileList);
    if (!files.length) return;
    section.hidden = false;
    list.innerHTML = ""; bar.hidden = false; bar.value = 0;
    const counts = { created: 0, duplicate: 0, rejected: 0 };
    const rows = files.map(row);
    let next = 0, finished = 0;
    async function lane() {
      while (next < files.length) {
        const i = next++;
        rows[i].querySelector(".file-result").textContent = "uploading";
        const result = await send(files[i], rows[i]);
        counts[result.status] = (counts[result.status] || 0) + 1;
        rows[i].className = result.status;
        rows[i].querySelector("progress").value = 100;
        rows[i].querySelector(".file-result").textContent = `${result.status}${result.reason ? " — " + result.reason : ""}`;
        finished += 1;
        bar.value = Math.round((finished / files.length) * 100);
        summary.textContent = `${finished} of ${files.length} sent · ${counts.created} added, ${counts.duplicate} duplicates, ${counts.rejected} rejected`;
      }
    }
    await Promise.all(Array.from({ length: Math.min(PARALLEL, files.length) }, lane));
    if (counts.rejected) document.getElementById("upload-details").open = true;  // problems are shown, not folded
    if (window.loupeReloadGrid) window.loupeReloadGrid();
    if (window.loupeWatchIndex) window.loupeWatchIndex();
  }

  input.addEventListener("change", () => upload(input.files));
  // Drop anywhere on the album page (the search bar keeps its own drop: an image dropped there is a
  // query, not an upload).
  const overlay = document.getElementById("drop-overlay");
  const carriesFiles = (e) => e.dataTransfer && Array.from(e.dataTransfer.types).includes("Files");
  let depth = 0;
  document.addEventListener("dragenter", (e) => { if (!carriesFiles(e)) return; depth += 1; if (overlay) overlay.hidden = false; });
  document.addEventListener("dragleave", () => { depth = Math.max(0, depth - 1); if (!depth && overlay) overlay.hidden = true; });
  document.addEventListener("dragover", (e) => { if (carriesFiles(e)) e.preventDefault(); });
  document.addEventListener("drop", (e) => {
    depth = 0; if (overlay) overlay.hidden = true;
    if (!carriesFiles(e) || e.defaultPrevented) return;
    e.preventDefault();
    upload(e.dataTransfer.files);
  });
})();
