// Selection and bulk actions on any photo grid marked `data-select` (album grid, search results,
// duplicates). A tile's checkbox, shift-click for a range, Ctrl/⌘-click to add; once anything is
// selected a plain click selects too instead of opening the viewer. The bar at the bottom acts on
// the selection through the API (session + CSRF), and the page updates in place.
(function () {
  const bar = document.getElementById("bulkbar");
  if (!bar) return;
  const count = document.getElementById("bulk-count");
  const dialog = document.getElementById("bulk-dialog");
  const selected = new Set();
  let anchor = null;

  const tiles = () => Array.from(document.querySelectorAll("[data-select] .tile[data-id]"));
  const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

  function refresh() {
    for (const tile of tiles()) {
      const on = selected.has(tile.dataset.id);
      tile.classList.toggle("selected", on);
      const box = tile.querySelector(".pick");
      if (box) box.checked = on;
    }
    bar.hidden = selected.size === 0;
    document.body.classList.toggle("selecting", selected.size > 0);
    count.textContent = `${plural(selected.size, "photo")} selected`;
    document.dispatchEvent(new CustomEvent("loupe:selection", { detail: { ids: ids() } }));
  }
  window.loupeSelectionChanged = refresh;  // grids call this after adding tiles
  // For pages whose photos are not tiles (the map): they set the selection and say what "all" is.
  window.loupeSelection = {
    set(list) { selected.clear(); for (const id of list) selected.add(String(id)); anchor = null; refresh(); },
    allIds: null,
  };

  function toggle(tile, range) {
    const on = !selected.has(tile.dataset.id);
    const all = tiles();
    const from = range && anchor ? all.indexOf(anchor) : -1;
    const to = all.indexOf(tile);
    const span = from >= 0 ? all.slice(Math.min(from, to), Math.max(from, to) + 1) : [tile];
    for (const t of span) (on ? selected.add(t.dataset.id) : selected.delete(t.dataset.id));
    anchor = tile;
    refresh();
  }

  // Capture phase: runs before the viewer's click handler, which it stops while selecting.
  document.addEventListener("click", (e) => {
    const tile = e.target.closest("[data-select] .tile[data-id]");
    if (!tile) return;
    const onBox = e.target.classList.contains("pick");
    const selecting = selected.size > 0 || e.shiftKey || e.ctrlKey || e.metaKey;
    if (!onBox && !selecting) return;
    if (!onBox) e.preventDefault();
    e.stopPropagation();
    toggle(tile, e.shiftKey);
  }, true);
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && selected.size && !document.querySelector(".pswp--open") && !dialog.open) clear();
  });

  function clear() { selected.clear(); anchor = null; refresh(); }
  document.getElementById("bulk-clear").addEventListener("click", clear);
  document.getElementById("bulk-all").addEventListener("click", async () => {
    if (window.loupeLoadAll) await window.loupeLoadAll();  // search results: fetch the pages not yet shown
    for (const tile of tiles()) selected.add(tile.dataset.id);
    if (window.loupeSelection.allIds) for (const id of window.loupeSelection.allIds()) selected.add(String(id));
    refresh();
  });

  const ids = () => Array.from(selected, Number);
  const MAX_ADDRESS_IDS = 2000;  // characters of ids in an address; search.js and map.js read the same
  async function api(url, body) {
    const response = await fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": bar.dataset.csrf },
      body: JSON.stringify(body),
    });
    let data = {};
    try { data = await response.json(); } catch (err) { data = { message: `HTTP ${response.status}` }; }
    return [response, data];
  }
  async function getAll(url) {
    const items = [];
    for (let next = url; next;) {
      const response = await fetch(next, { credentials: "same-origin" });
      if (!response.ok) break;
      const page = await response.json();
      items.push(...(page.results || []));
      next = page.next;
    }
    return items;
  }

  // One dialog for every question: a title, a sentence, optionally a choice; resolves to the
  // chosen value, true for a plain OK, or null when cancelled.
  const dialogStatus = document.getElementById("bulk-dialog-status");
  function ask({ title, text, choices = null, label = "", ok = "OK", danger = false }) {
    document.getElementById("bulk-dialog-title").textContent = title;
    document.getElementById("bulk-dialog-text").textContent = text;
    const select = document.getElementById("bulk-dialog-choice");
    const selectLabel = document.getElementById("bulk-dialog-label");
    select.hidden = selectLabel.hidden = !choices;
    select.innerHTML = "";
    if (choices) {
      selectLabel.textContent = label;
      for (const [value, name] of choices) select.add(new Option(name, value));
    }
    const okButton = document.getElementById("bulk-dialog-ok");
    okButton.textContent = ok;
    okButton.className = danger ? "danger" : "";
    okButton.disabled = Boolean(choices && !choices.length);
    dialogStatus.textContent = "";
    dialog.showModal();
    return new Promise((resolve) => {
      dialog.addEventListener("close", () => {
        resolve(dialog.returnValue === "ok" ? (choices ? select.value : true) : null);
      }, { once: true });
    });
  }
  function say(text) { count.textContent = text; }

  const remove = document.getElementById("bulk-delete");
  if (remove) remove.addEventListener("click", async () => {
    const n = selected.size;
    const sure = await ask({ title: `Delete ${plural(n, "photo")}?`, ok: `Delete ${n}`, danger: true,
                             text: "They are removed from the album with their search vectors. This cannot be undone." });
    if (!sure) return;
    const gone = ids();
    const [response, body] = await api(bar.dataset.deleteUrl, { image_ids: gone });
    if (!response.ok) { say(body.message); return; }
    for (const tile of tiles()) if (selected.has(tile.dataset.id)) tile.remove();
    selected.clear(); refresh();
    bar.hidden = false;  // keep the outcome in view until the next selection
    say(`Deleted ${plural(body.deleted, "photo")}.`);
    setTimeout(() => { if (!selected.size) bar.hidden = true; }, 4000);
    document.dispatchEvent(new CustomEvent("loupe:deleted", { detail: { count: body.deleted, ids: gone } }));
  });

  // Download: a real form post, so the browser streams the zip to disk itself.
  const downloadForm = document.getElementById("bulk-download-form");
  downloadForm.addEventListener("submit", () => {
    const holder = document.getElementById("bulk-download-ids");
    holder.innerHTML = "";
    for (const id of ids()) {
      const input = document.createElement("input");
      input.type = "hidden"; input.name = "image_ids"; input.value = String(id);
      holder.appendChild(input);
    }
  });

  document.getElementById("bulk-copy").addEventListener("click", async () => {
    const albums = (await getAll(bar.dataset.albumsUrl))
      .filter((a) => String(a.id) !== bar.dataset.album && (a.role === "editor" || a.role === "owner"));
    const target = await ask({
      title: `Copy ${plural(selected.size, "photo")}`, label: "To album", ok: "Copy",
      text: albums.length ? "The copies are indexed with the other album's encoder." : "You can edit no other album.",
      choices: albums.map((a) => [a.id, a.name]),
    });
    if (!target) return;
    const [response, body] = await api(bar.dataset.copyUrl, { image_ids: ids(), target_album_id: Number(target) });
    say(response.ok ? `Copied ${body.copied}${body.skipped_duplicates ? `, ${body.skipped_duplicates} already there` : ""}.`
      : body.message);
  });

  // The selection as one query: the search page ranks the album by the mean of their vectors.
  const like = document.getElementById("bulk-search");
  // A form posts at most ~1,000 fields (Django's DATA_UPLOAD_MAX_NUMBER_FIELDS follows the bulk cap):
  // a larger selection is stood for by an even sample, whose mean vector is the selection's within noise.
  const MAX_QUERY_IDS = 1000;
  function sample(all) {
    if (all.length <= MAX_QUERY_IDS) return all;
    const step = all.length / MAX_QUERY_IDS;
    return Array.from({ length: MAX_QUERY_IDS }, (_, k) => all[Math.floor(k * step)]);
  }
  if (like) like.addEventListener("click", () => {
    const list = sample(ids()).join(",");
    if (list.length <= MAX_ADDRESS_IDS) { location.href = `${bar.dataset.searchUrl}?image_ids=${list}`; return; }
    // Too long for an address (gunicorn reads a 4 KB request line): the list waits in sessionStorage.
    sessionStorage.setItem("loupe-query-ids", list);
    location.href = `${bar.dataset.searchUrl}?image_ids=selection`;
  });

  document.getElementById("bulk-class").addEventListener("click", async () => {
    const sets = (await getAll(bar.dataset.supportSetsUrl)).filter((s) => s.role === "editor" || s.role === "owner");
    const choices = [];
    for (const set of sets) {
      const response = await fetch(`/api/v1/support-sets/${set.id}/`, { credentials: "same-origin" });
      if (!response.ok) continue;
      for (const cls of (await response.json()).classes || []) choices.push([cls.id, `${set.name} › ${cls.label}`]);
    }
    const target = await ask({
      title: `Add ${plural(selected.size, "photo")} to a support class`, label: "Class", ok: "Add", choices,
      text: choices.length ? "They become labeled examples for few-shot classification."
        : "This album has no support set with classes you can edit yet (see Classify).",
    });
    if (!target) return;
    const [response, body] = await api(`/api/v1/support-classes/${target}/images/`, { image_ids: ids() });
    say(response.ok ? "Added to the class." : body.message);
  });
  // A labeling job for the selection (on the search page, "Select all" first: the whole result);
  // its labels are reviewed on the set's review page, filtered to this job's photos.
  const labelButton = document.getElementById("bulk-label");
  if (labelButton) labelButton.addEventListener("click", async () => {
    const sets = (await getAll(bar.dataset.supportSetsUrl)).filter((s) => s.role === "editor" || s.role === "owner");
    const target = await ask({
      title: `Label ${plural(selected.size, "photo")} with a support set`, label: "Support set", ok: "Start",
      text: sets.length ? "A job predicts each photo's class; you then review the least certain first."
        : "This album has no support set you can edit yet (see Classify).",
      choices: sets.map((s) => [s.id, s.name]),
    });
    if (!target) return;
    const [response, body] = await api(`/api/v1/support-sets/${target}/label-jobs/`, { scope: "images", image_ids: ids() });
    if (!response.ok) { say(body.message); return; }
    const link = document.createElement("a");
    link.href = `/support-sets/${target}/review/?job=${body.id}&state=`;
    link.textContent = "review them";
    // A job skips photos the set labeled already (relabel is the review page's).
    count.textContent = body.total ? `Labeling ${plural(body.total, "photo")} (job #${body.id}): `
      : `The set has labeled ${selected.size === 1 ? "it" : "them"} already: `;
    count.append(link);
  });
  refresh();
})();
