// The album grid: endless in both directions. The server renders one page (60 photos); the next and
// the earlier pages come as the reader nears them, fetched as the same HTML fragment the server
// renders. The address follows the page of the first photo on screen, so Back and reload return
// to the same place. Tiles skip layout and paint off-screen (content-visibility in app.css), which
// keeps thousands of them cheap.
(function () {
  const holder = document.getElementById("grid");
  if (!holder) return;
  const grid = () => document.getElementById("photo-grid");

  const filters = document.getElementById("grid-filters");
  // A class is a class of one set: the chosen option names its set (runs before the form submits).
  const labelFilter = document.getElementById("label-filter");
  if (labelFilter) labelFilter.addEventListener("change", () => {
    const option = labelFilter.selectedOptions[0];
    document.getElementById("label-set").value = (option && option.dataset.set) || "";
  });
  if (filters) filters.addEventListener("change", () => filters.submit());

  let busy = false;
  // A reload (after an upload or a job) bumps the generation: a page or a reload still on its way
  // from before it is dropped, not appended to the fresh grid.
  let generation = 0;
  const busyWith = window.loupeBusyTracker(holder);  // aria-busy while a page or a reload is awaited
  async function fetchPage(link) {
    const response = await fetch(link.href, { credentials: "same-origin", headers: { "HX-Request": "true" } });
    if (!response.ok) return null;
    return new DOMParser().parseFromString(await response.text(), "text/html");
  }
  // One more page, after the last tile ("later") or before the first ("earlier"); the link that
  // fetched it gives way to the fragment's own link onward, or goes when there is none.
  const load = (id) => busyWith(async () => {
    const link = document.getElementById(id);
    if (!link || busy) return;
    busy = true;
    const asked = generation;
    const doc = await fetchPage(link).finally(() => { busy = false; });
    if (asked !== generation || !link.isConnected) { watch(); return; }  // the fresh grid's link loads next
    if (!doc) return;
    const tiles = doc.querySelectorAll("#photo-grid > li.tile");
    if (id === "grid-later") grid().append(...tiles);
    else {  // keep what is on screen where it is while photos arrive above it
      const before = document.documentElement.scrollHeight;
      grid().prepend(...tiles);
      window.scrollBy(0, document.documentElement.scrollHeight - before);
    }
    const onward = doc.getElementById(id);
    if (onward) link.replaceWith(onward); else link.parentElement.remove();
    watch();
    if (window.loupeSelectionChanged) window.loupeSelectionChanged();
  });
  const later = () => load("grid-later");
  const earlier = () => load("grid-earlier");

  // Later pages load ahead of the reader (800 px early). Earlier pages load only once the reader
  // scrolls themselves: on a page opened at ?page=N the "earlier" link sits on screen at once, and
  // loading above would shift what they came back to.
  const ahead = "IntersectionObserver" in window ? new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting)) later();
  }, { rootMargin: "800px 0px" }) : null;
  const above = "IntersectionObserver" in window ? new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting)) earlier();
  }) : null;
  let armed = false;
  const arm = () => { if (!armed) { armed = true; watch(); } };
  for (const type of ["wheel", "touchmove", "keydown"]) window.addEventListener(type, arm, { passive: true, once: true });
  function watch() {
    if (!ahead) return;
    ahead.disconnect(); above.disconnect();
    const next = document.getElementById("grid-later");
    if (next) ahead.observe(next);
    const previous = document.getElementById("grid-earlier");
    if (previous && armed) above.observe(previous);
  }
  if (new URL(location.href).searchParams.get("page")) history.scrollRestoration = "manual";  // land on that page's first row
  holder.addEventListener("click", (e) => {
    const link = e.target.closest("#grid-later, #grid-earlier");
    if (!link) return;
    e.preventDefault();
    (link.id === "grid-later" ? later : earlier)();
  });

  // The page of the first tile on screen goes into the address (replaceState: scrolling is not a
  // history step).
  let pending = false;
  window.addEventListener("scroll", () => {
    if (pending) return;
    pending = true;
    setTimeout(() => {
      pending = false;
      const first = Array.from(grid().children).find((t) => t.dataset.page && t.getBoundingClientRect().bottom > 0);
      if (!first) return;
      const url = new URL(location.href);
      if (url.searchParams.get("page") === first.dataset.page || (!url.searchParams.get("page") && first.dataset.page === "1")) return;
      if (first.dataset.page === "1") url.searchParams.delete("page"); else url.searchParams.set("page", first.dataset.page);
      history.replaceState(history.state, "", url);
    }, 200);
  }, { passive: true });

  document.addEventListener("loupe:deleted", (e) => {
    const label = document.getElementById("grid-count");
    const n = parseInt(label.textContent.replace(/[^0-9]/g, ""), 10);
    if (!Number.isNaN(n)) label.textContent = `${Math.max(0, n - e.detail.count)} photos`;
  });
  // After an upload or an index job the grid reloads its first page (upload.js, progress.js).
  window.loupeReloadGrid = () => busyWith(async () => {
    const url = new URL(location.href);
    url.searchParams.delete("page");
    const asked = ++generation;
    const response = await fetch(url, { credentials: "same-origin", headers: { "HX-Request": "true" } });
    if (!response.ok) return;
    const html = await response.text();
    if (asked !== generation) return;
    holder.innerHTML = html;
    watch();
    if (window.loupeSelectionChanged) window.loupeSelectionChanged();
  });
  watch();
  if (window.loupeViewer) window.loupeViewer.attach(holder);
})();
