// The viewer: PhotoSwipe (vendored, static/vendor/photoswipe) over any container of tiles whose
// link is `a.open` with data-src/-width/-height. Full screen, ←/→ and Esc, wheel/pinch zoom and pan,
// swipe on phones, neighbours preloaded. An info panel ("i") shows readable EXIF and "More like
// this". The open photo is in the address (?view=<id>): Back closes it, and the link can be sent
// to another member of the album (the API checks membership for every file it serves).
(function () {
  if (!window.PhotoSwipe) return;
  const infoCache = new Map();
  let pswp = null;
  let pushed = false;

  function itemsOf(container) {
    return Array.from(container.querySelectorAll(".tile[data-id] a.open")).map((a) => {
      const thumb = a.querySelector("img");
      let width = Number(a.dataset.width), height = Number(a.dataset.height);
      if (!width || !height) {  // size unknown (an old row): the thumbnail keeps the aspect ratio
        const w = thumb.naturalWidth || 4, h = thumb.naturalHeight || 3, scale = 1600 / Math.max(w, h);
        width = Math.round(w * scale); height = Math.round(h * scale);
      }
      return { id: a.closest(".tile").dataset.id, src: a.dataset.src || a.href, msrc: thumb.currentSrc || thumb.src,
               width, height, alt: a.dataset.name || thumb.alt, name: a.dataset.name || thumb.alt, page: a.href };
    });
  }

  function setAddress(id, push) {
    const url = new URL(location.href);
    if (id) url.searchParams.set("view", id); else url.searchParams.delete("view");
    if (push) { history.pushState({ viewer: true }, "", url); pushed = true; } else history.replaceState(history.state, "", url);
  }

  const esc = (text) => String(text ?? "").replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
  async function json(url) {
    const response = await fetch(url, { credentials: "same-origin" });
    return response.ok ? response.json() : null;
  }

  async function fillInfo(panel, item, items) {
    panel.dataset.id = item.id;
    panel.innerHTML = `<h2 class="name"></h2><dl class="facts"></dl><p class="links"></p><h3>More like this</h3><ul class="strip"><li class="meta">Loading…</li></ul>`;
    panel.querySelector(".name").textContent = item.name;
    panel.querySelector(".links").innerHTML =
      `<a href="${esc(item.page)}">Photo page</a> · <a href="${esc(item.src)}" download>Original</a>`;
    let image = infoCache.get(item.id);
    if (!image) { image = await json(`/api/v1/images/${item.id}/`); if (image) infoCache.set(item.id, image); }
    if (panel.dataset.id !== item.id) return;  // the reader moved on meanwhile
    const facts = panel.querySelector(".facts");
    const info = (image && image.info) || {};
    const taken = info.taken || (image && image.taken_at);
    const rows = [["Taken", taken && new Date(taken).toLocaleString()], ["Camera", info.camera || (image && image.camera)], ["Lens", info.lens],
                  ["Exposure", info.exposure], ["Size", info.size || (image && image.width ? `${image.width} × ${image.height}` : "")],
                  ["Place", info.place ? `${info.place.lat.toFixed(5)}, ${info.place.lon.toFixed(5)}` : ""]];
    for (const [label, value] of rows) {
      if (!value) continue;
      const dt = document.createElement("dt"); dt.textContent = label;
      const dd = document.createElement("dd"); dd.textContent = value;
      if (label === "Place") {
        const link = document.createElement("a");
        link.href = `https://www.openstreetmap.org/?mlat=${info.place.lat}&mlon=${info.place.lon}#map=15/${info.place.lat}/${info.place.lon}`;
        link.textContent = value; link.rel = "noopener"; link.target = "_blank";
        dd.textContent = ""; dd.appendChild(link);
      }
      facts.append(dt, dd);
    }
    // Labels from the album's support sets, each with its set, state and margin (rejected ones too:
    // the panel says what the review decided).
    for (const item of (image && image.labels) || []) {
      const dt = document.createElement("dt"); dt.textContent = item.support_set_name || `Set #${item.support_set}`;
      const dd = document.createElement("dd");
      const chip = document.createElement("span");
      chip.className = `label-chip ${item.state}`; chip.textContent = item.label;
      const link = document.createElement("a");
      link.href = `/support-sets/${item.support_set}/review/`; link.textContent = `${item.state}, margin ${item.margin.toFixed(2)}`;
      dd.append(chip, " ", link);
      facts.append(dt, dd);
    }
    if (image && image.album) {
      const search = document.createElement("a");
      search.href = `/albums/${image.album}/search/?image_id=${item.id}`; search.textContent = "Search with this photo";
      panel.querySelector(".links").append(" · ", search);
    }
    const similar = await json(`/api/v1/images/${item.id}/similar/?page_size=12`);
    if (panel.dataset.id !== item.id) return;
    const strip = panel.querySelector(".strip");
    strip.innerHTML = "";
    const results = similar ? similar.results : [];
    if (!results.length) strip.innerHTML = '<li class="meta">Nothing close enough, or not indexed yet.</li>';
    for (const r of results) {
      const li = document.createElement("li");
      const a = document.createElement("a");
      a.href = `/images/${r.image_id}/`; a.title = `${r.original_name} · ${r.score.toFixed(3)}`;
      const img = document.createElement("img");
      img.src = r.thumbnail_url; img.alt = r.original_name; img.loading = "lazy";
      a.appendChild(img); li.appendChild(a); strip.appendChild(li);
      a.addEventListener("click", (e) => {  // already in this viewer: go there instead of leaving
        const index = items.findIndex((it) => it.id === String(r.image_id));
        if (index >= 0 && pswp) { e.preventDefault(); pswp.goTo(index); }
      });
    }
  }

  function open(items, index, { push = true } = {}) {
    if (!items.length) return;
    pswp = new window.PhotoSwipe({
      dataSource: items, index, preload: [1, 2], bgOpacity: 0.94, showHideAnimationType: "fade",
      secondaryZoomLevel: 1, maxZoomLevel: 4, closeTitle: "Close (Esc)", zoomTitle: "Zoom (z)",
      arrowPrevTitle: "Previous (←)", arrowNextTitle: "Next (→)", errorMsg: "This photo could not be loaded.",
    });
    let panel = null;
    pswp.on("uiRegister", () => {
      pswp.ui.registerElement({
        name: "info-button", order: 15, isButton: true, title: "Info and similar photos (i)", ariaLabel: "Info",
        html: '<span class="pswp-info-label">i</span>',
        onClick: () => { panel.hidden = !panel.hidden; if (!panel.hidden) fillInfo(panel, pswp.currSlide.data, items); },
      });
      pswp.ui.registerElement({
        name: "info-panel", appendTo: "root", tagName: "aside",
        onInit: (el) => { panel = el; el.className = "pswp-info"; el.hidden = true; el.setAttribute("aria-label", "Photo info"); },
      });
      pswp.ui.registerElement({
        name: "caption", appendTo: "root", order: 9,
        onInit: (el) => { el.className = "pswp-caption"; el.setAttribute("aria-live", "polite"); pswp.on("change", () => { el.textContent = pswp.currSlide.data.name; }); },
      });
    });
    pswp.on("change", () => {
      const item = pswp.currSlide.data;
      setAddress(item.id, false);
      if (panel && !panel.hidden) fillInfo(panel, item, items);
    });
    pswp.on("keydown", (e) => {
      const key = e.originalEvent.key;
      if (key === "i") { panel.hidden = !panel.hidden; if (!panel.hidden) fillInfo(panel, pswp.currSlide.data, items); }
    });
    pswp.on("openingAnimationEnd", () => { pswp.element.dataset.ready = "1"; });
    pswp.on("close", () => {
      pswp = null;
      if (pushed) { pushed = false; history.back(); } else setAddress(null, false);
    });
    setAddress(items[index].id, push);
    pswp.init();
  }

  window.addEventListener("popstate", () => {
    if (pswp && !new URL(location.href).searchParams.get("view")) { pushed = false; pswp.close(); }
  });

  const attached = [];
  window.loupeViewer = {
    // Delegated, so tiles added later (endless scroll, search pages) open too.
    attach(container) {
      attached.push(container);
      container.addEventListener("click", (e) => {
        const link = e.target.closest(".tile[data-id] a.open");
        if (!link || e.defaultPrevented || e.button !== 0 || e.ctrlKey || e.metaKey || e.shiftKey) return;
        e.preventDefault();
        const items = itemsOf(container);
        open(items, Math.max(0, items.findIndex((it) => it.id === link.closest(".tile").dataset.id)));
      });
      const wanted = new URL(location.href).searchParams.get("view");
      if (wanted && !pswp) this.openId(wanted, container);
    },
    // A shared link: the photo among the tiles on the page, or alone when it is elsewhere.
    async openId(id, container) {
      const items = itemsOf(container);
      const index = items.findIndex((it) => it.id === String(id));
      if (index >= 0) { open(items, index, { push: false }); return; }
      const image = await json(`/api/v1/images/${id}/`);
      if (!image) { setAddress(null, false); return; }
      const native = /^image\/(jpeg|png|webp|gif|avif|bmp)$/.test(image.mime);
      open([{ id: String(image.id), src: native ? image.file_url : image.thumbnail_url, msrc: `/api/v1/images/${id}/thumbnail`,
              width: image.width || 1600, height: image.height || 1200, name: image.original_name, alt: image.original_name,
              page: `/images/${id}/` }], 0, { push: false });
    },
  };
})();
