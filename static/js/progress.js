// Live index progress: polls the album while a job runs (rate and ETA from the job row), refreshes
// the grid when it finishes. Polling, not SSE: one cheap GET every 2 s only while work is under way.
(function () {
  const box = document.getElementById("index-status");
  if (!box) return;
  const bar = document.getElementById("job-bar");
  const text = document.getElementById("job-text");
  const wrap = document.getElementById("job-progress");
  let timer = null;

  function eta(seconds) {
    if (seconds == null) return "";
    if (seconds < 90) return ` · about ${Math.round(seconds)} s left`;
    return ` · about ${Math.round(seconds / 60)} min left`;
  }

  async function poll() {
    const response = await fetch(box.dataset.url, { credentials: "same-origin" });
    if (!response.ok) return;
    const album = await response.json();
    const index = album.index;
    const model = document.getElementById("search-model");
    model.textContent = index.search_model || "nothing yet (not indexed)";
    model.title = index.search_model_id || "";
    for (const s of ["indexed", "pending", "failed"]) document.getElementById(`count-${s}`).textContent = index.images[s];
    const indexNow = document.getElementById("index-now"), retryFailed = document.getElementById("retry-failed");
    if (indexNow) indexNow.hidden = !index.images.pending || Boolean(index.active_job);
    if (retryFailed) retryFailed.hidden = !index.images.failed;
    const job = index.active_job;
    if (job) {
      wrap.hidden = false;
      document.getElementById("job-kind").textContent = job.kind;
      bar.max = Math.max(job.total, 1); bar.value = job.done;
      const rate = job.rate ? ` · ${job.rate.toFixed(1)} images/s` : "";
      text.textContent = job.status === "queued" ? "Queued: waiting for a worker"
        : `${job.done} of ${job.total}${job.failed ? ` · ${job.failed} failed` : ""}${rate}${eta(job.eta_seconds)}${job.stale ? " · no progress for a while" : ""}`;
      schedule();
    } else if (!wrap.hidden) {
      wrap.hidden = true;
      text.textContent = "";
      if (window.htmx) htmx.ajax("GET", window.location.pathname, { target: "#grid" });
    }
  }

  function schedule() { clearTimeout(timer); timer = setTimeout(poll, 2000); }
  window.loupeWatchIndex = schedule;  // upload.js calls this after an upload

  const button = document.getElementById("index-now");
  if (button) button.addEventListener("click", async () => {
    await fetch(box.dataset.indexUrl, { method: "POST", credentials: "same-origin", headers: { "X-CSRFToken": box.dataset.csrf } });
    poll();
  });
  const retry = document.getElementById("retry-failed");
  if (retry) retry.addEventListener("click", async () => {
    await fetch(box.dataset.retryUrl, { method: "POST", credentials: "same-origin", headers: { "X-CSRFToken": box.dataset.csrf } });
    retry.hidden = true;
    poll();
  });
  if (box.dataset.active === "1") schedule();
})();
