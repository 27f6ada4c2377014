// The Index chip in every album page's header: "Up to date", "Queued", "Indexing 340 / 2,000
// (42 img/s, ~1 min)", "Rebuilding for <encoder>". It polls the album (one cheap GET every 2 s)
// only while a job is under way or the album's encoder downloads, and reloads the grid when one finishes. Its panel holds the
// counts and the Index / Retry buttons; a failed encoder switch shows below the tabs until dismissed.
(function () {
  const box = document.getElementById("index-status");
  if (!box) return;
  const chip = document.getElementById("index-chip");
  const bar = document.getElementById("job-bar");
  const text = document.getElementById("job-text");
  const wrap = document.getElementById("job-progress");
  const number = (n) => Number(n).toLocaleString("en");
  let timer = null;

  function eta(seconds) {
    if (seconds == null) return null;
    return seconds < 90 ? `~${Math.max(1, Math.round(seconds))} s` : `~${Math.round(seconds / 60)} min`;
  }

  function describe(index) {
    const job = index.active_job;
    if (job) {
      if (job.status === "queued") return ["Queued", "busy"];
      const detail = [job.rate ? `${job.rate.toFixed(job.rate < 10 ? 1 : 0)} img/s` : null, eta(job.eta_seconds)].filter(Boolean);
      const counts = `${number(job.done)} / ${number(job.total)}${detail.length ? ` (${detail.join(", ")})` : ""}`;
      if (job.kind === "rebuild") return [`Rebuilding for ${box.dataset.encoder} · ${counts}`, "busy"];
      return [`Indexing ${counts}`, "busy"];
    }
    if (index.images.failed) return [`${number(index.images.failed)} failed to index`, "bad"];
    if (index.images.pending) return [`${number(index.images.pending)} waiting to index`, "warn"];
    if (!index.images.indexed) return ["No photos yet", "idle"];
    return ["Up to date", "ok"];
  }

  function show(index) {
    const [label, state] = describe(index);
    chip.textContent = label;
    box.dataset.state = state;
    const model = document.getElementById("search-model");
    model.textContent = index.search_model || "nothing yet (not indexed)";
    model.title = index.search_model_id || "";
    for (const s of ["indexed", "pending", "failed"]) document.getElementById(`count-${s}`).textContent = number(index.images[s]);
    const indexNow = document.getElementById("index-now"), retryFailed = document.getElementById("retry-failed");
    if (indexNow) indexNow.hidden = !index.images.pending || Boolean(index.active_job);
    if (retryFailed) retryFailed.hidden = !index.images.failed;
    const failure = index.last_failed_rebuild;
    const banner = document.getElementById("rebuild-failure");
    if (banner && failure) {
      document.getElementById("rebuild-failure-text").textContent =
        `Switching to ${failure.encoder_spec} failed: ${failure.message} The album still searches with its previous encoder.`;
      banner.hidden = false;
    }
    // The album's encoder still downloading (a model fetch job): the line under the title follows it.
    const download = index.model_fetch, line = document.getElementById("model-fetch");
    if (line) {
      line.hidden = !download;
      if (download) line.textContent = `Text search will be ready when the model has downloaded (${download.percent} %).`;
    }
    const job = index.active_job;
    if (job) {
      wrap.hidden = false;
      document.getElementById("job-kind").textContent = job.kind;
      bar.max = Math.max(job.total, 1); bar.value = job.done;
      text.textContent = job.status === "queued" ? "Queued: waiting for a worker"
        : `${number(job.done)} of ${number(job.total)}${job.failed ? ` · ${number(job.failed)} failed` : ""}${job.stale ? " · no progress for a while" : ""}`;
      return true;
    }
    if (!wrap.hidden) {
      wrap.hidden = true;
      text.textContent = "";
      if (window.loupeReloadGrid) window.loupeReloadGrid();
    }
    return Boolean(download);
  }

  async function poll() {
    const response = await fetch(box.dataset.url, { credentials: "same-origin" });
    if (!response.ok) return;
    if (show((await response.json()).index)) schedule();
  }
  function schedule() { clearTimeout(timer); timer = setTimeout(poll, 2000); }
  window.loupeWatchIndex = schedule;  // upload.js calls this after an upload

  const post = (url) => fetch(url, { method: "POST", credentials: "same-origin", headers: { "X-CSRFToken": box.dataset.csrf } });
  const button = document.getElementById("index-now");
  if (button) button.addEventListener("click", async () => { await post(box.dataset.indexUrl); poll(); });
  const retry = document.getElementById("retry-failed");
  if (retry) retry.addEventListener("click", async () => { await post(box.dataset.retryUrl); retry.hidden = true; poll(); });
  const dismiss = document.getElementById("rebuild-failure-dismiss");
  if (dismiss) dismiss.addEventListener("click", async () => {
    const response = await post(box.dataset.dismissUrl);
    if (response.ok) document.getElementById("rebuild-failure").hidden = true;
  });
  // Pages that rendered the summary start from it; the others ask once.
  if (box.dataset.active === "1") schedule();
  poll();
})();
