// Server-folder import (staff, with LOUPE_IMPORT_ROOTS set): starts the job; the jobs page follows it.
(function () {
  const form = document.getElementById("folder-import-form");
  if (!form) return;
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const box = document.getElementById("folder-import");
    const status = document.getElementById("import-status");
    const response = await fetch(box.dataset.url, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": box.dataset.csrf },
      body: JSON.stringify({ path: document.getElementById("import-path").value }),
    });
    const body = await response.json();
    status.textContent = response.ok ? `Import started: ${body.total} file(s) to look at.` : body.message;
  });
})();
