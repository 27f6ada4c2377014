// The semantic map: every placed photo of the album as a point laid out by meaning (the map API),
// drawn by regl-scatterplot (WebGL, vendored) so that 100k points pan and zoom smoothly. Zoomed in
// until few points are on screen, the points become their thumbnails. Colour by cluster, date taken
// or a support set's labels; hover for a preview, click to open the viewer, lasso to select (the
// bulk bar of select.js acts on it); the album bar's search highlights its hits and dims the rest.
import { createScatterplot } from "regl-scatterplot";

const app = document.getElementById("map-app");
const $ = (id) => document.getElementById(id);
const plural = (n, word) => `${n.toLocaleString()} ${word}${n === 1 ? "" : "s"}`;
const canEdit = app.dataset.canEdit === "1";
const status = $("map-status");

const THUMBS_AT = 300;  // at most this many points on screen: draw them as thumbnails
const NONE_COLOR = "#b8bdc9";
const PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f",
                 "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#3757d8",
                 "#a0cbe8", "#ffbe7d"];
// Viridis at five stops: dark = oldest, yellow = newest; readable for colour-blind readers.
const GRADIENT = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
const DATE_BINS = 64;
const HOME = 1.15;  // the whole map with a margin, so that photos at its edge are not cut in half
// The camera fits [-1, 1] to the canvas's height: a portrait canvas (a phone) must step back further.
const home = () => HOME * Math.max(1, $("map-stage").clientHeight / ($("map-stage").clientWidth || 1));

let map = null;         // the API's answer on screen
let plot = null;        // the scatterplot, once WebGL is known to work
let index = new Map();  // image id → point index
let categories = null;  // { values: int per point, colors: [...], name(i) → text for the tip }
let hits = null;        // image ids the search found, or null when nothing is searched
let lasso = false;      // the next select event comes from the lasso, not from a click
let hovered = null;
let pollTimer = null;

async function api(url, { method = "GET", body = null } = {}) {
  const init = { method, credentials: "same-origin", headers: { "X-CSRFToken": app.dataset.csrf } };
  if (body instanceof FormData) init.body = body;
  else if (body) { init.body = JSON.stringify(body); init.headers["Content-Type"] = "application/json"; }
  const response = await fetch(url, init);
  let data = {};
  try { data = await response.json(); } catch (err) { data = { message: `HTTP ${response.status}` }; }
  return [response, data];
}

// ---- States: no map, building, ready ------------------------------------------------------------

const build = $("map-build");
const buildText = $("map-build-text");
const buildButton = $("map-build-button");
const progress = $("map-progress");

function showJob(job) {
  const active = job && (job.status === "queued" || job.status === "running");
  progress.hidden = !active;
  if (!active) return false;
  $("map-progress-bar").max = job.total || 1;
  $("map-progress-bar").value = job.done || 0;
  $("map-progress-text").textContent = job.status === "queued" ? "Queued: waiting for a worker"
    : `Placing photos: step ${job.done} of ${job.total}${job.message ? ` (${job.message})` : ""}`;
  return true;
}

async function rebuild() {
  if (buildButton) buildButton.disabled = true;
  const [response, body] = await api(app.dataset.rebuildUrl, { method: "POST" });
  if (buildButton) buildButton.disabled = false;
  if (!response.ok) { status.textContent = body.message || body.detail || `HTTP ${response.status}`; return; }
  await load();
}
if (buildButton) buildButton.addEventListener("click", rebuild);

function supportSetParam() {
  return $("map-color").value === "label" && $("map-support-set").value ? `?support_set=${$("map-support-set").value}` : "";
}

async function load(pending = null) {
  clearTimeout(pollTimer);
  const [response, body] = await (pending || api(app.dataset.url + supportSetParam()));
  if (!map) performance.mark("map-parsed");
  if (!response.ok) { status.textContent = body.message || `The map could not be loaded (HTTP ${response.status}).`; return; }
  const busy = showJob(body.job);
  const ready = body.state === "ready" && body.points && body.points.image_id.length > 0;
  build.hidden = ready && !busy;
  $("map-toolbar").hidden = $("map-help").hidden = !ready;
  if (buildButton) buildButton.hidden = busy || ready || app.dataset.indexed !== "1";
  if (app.dataset.indexed !== "1" && !ready) {
    buildText.textContent = "The map places photos by their search vectors: indexing must finish first (see the Index chip).";
  } else if (busy) {
    buildText.textContent = ready ? "The map is being updated; it shows the previous layout meanwhile." : "The map is being built.";
    build.hidden = false;
  } else if (!ready) {
    buildText.textContent = canEdit ? "This album has no map yet." : "This album has no map yet: an editor of the album can build it.";
  }
  if (!busy && body.job && body.job.status === "failed") {
    build.hidden = false;
    buildText.textContent += ` The last map job failed: ${body.job.message || "no reason recorded"}.`;
  }
  const unplaced = $("map-unplaced");
  unplaced.hidden = !(ready && body.unplaced > 0);
  if (!unplaced.hidden) {
    unplaced.textContent = `${plural(body.unplaced, "new photo")} will appear after the next update of the map.`;
    if (canEdit && !busy) {
      const again = document.createElement("button");
      again.type = "button"; again.className = "link"; again.textContent = "Update now";
      again.addEventListener("click", rebuild);
      unplaced.append(" ", again);
    }
  }
  if (busy) pollTimer = setTimeout(load, 1500);
  if (!ready) { status.textContent = busy ? "" : (body.state === "building" ? "Building…" : ""); $("map-layout").hidden = true; return; }
  await show(body);
}

// ---- Drawing ------------------------------------------------------------------------------------

function webglMissing() {
  const probe = document.createElement("canvas");
  return !(probe.getContext("webgl2") || probe.getContext("webgl"));
}

function hex(rgb) { return `#${rgb.map((v) => Math.round(v).toString(16).padStart(2, "0")).join("")}`; }
function gradient(t) {
  const at = Math.min(GRADIENT.length - 1.001, Math.max(0, t) * (GRADIENT.length - 1));
  const i = Math.floor(at), f = at - i;
  return hex(GRADIENT[i].map((v, k) => v + (GRADIENT[i + 1][k] - v) * f));
}

// Each colouring is one categorical value per point, its palette and the legend that explains it.
function colouring(mode) {
  const p = map.points, n = p.image_id.length;
  const values = new Array(n);
  if (mode === "date") {
    let lo = Infinity, hi = -Infinity;
    for (const t of p.taken) if (t !== null) { lo = Math.min(lo, t); hi = Math.max(hi, t); }
    const span = hi - lo || 1;
    for (let i = 0; i < n; i++) values[i] = p.taken[i] === null ? DATE_BINS : Math.min(DATE_BINS - 1, Math.floor(((p.taken[i] - lo) / span) * DATE_BINS));
    const colors = Array.from({ length: DATE_BINS }, (_, i) => gradient(i / (DATE_BINS - 1))).concat(NONE_COLOR);
    const day = (t) => new Date(t * 1000).toLocaleDateString();
    const undated = values.filter((v) => v === DATE_BINS).length;
    return { values, colors, title: "Date taken", range: Number.isFinite(lo) ? [day(lo), day(hi)] : null,
             entries: undated ? [{ name: "No date", size: undated, color: NONE_COLOR, members: DATE_BINS }] : [],
             name: (i) => (p.taken[i] === null ? "no date" : `taken ${day(p.taken[i])}`) };
  }
  if (mode === "label" && map.labels) {
    const { names, index: labelOf, state } = map.labels;
    for (let i = 0; i < n; i++) values[i] = labelOf[i] >= 0 ? labelOf[i] : names.length;
    const colors = names.map((_, i) => PALETTE[i % PALETTE.length]).concat(NONE_COLOR);
    const sizes = new Array(names.length + 1).fill(0);
    for (const v of values) sizes[v]++;
    const entries = names.map((name, i) => ({ name, size: sizes[i], color: colors[i], members: i }))
      .concat([{ name: "No label", size: sizes[names.length], color: NONE_COLOR, members: names.length }]);
    return { values, colors, title: "Labels", entries,
             name: (i) => (labelOf[i] >= 0 ? `${names[labelOf[i]]}${state[i] ? ` (${state[i]})` : ""}` : "no label") };
  }
  // Clusters: their position in the list, noise last.
  const slot = new Map(map.clusters.map((c, i) => [c.id, i]));
  const noise = map.clusters.length;
  for (let i = 0; i < n; i++) values[i] = slot.has(p.cluster[i]) ? slot.get(p.cluster[i]) : noise;
  const colors = map.clusters.map((_, i) => PALETTE[i % PALETTE.length]).concat(NONE_COLOR);
  const unclustered = values.filter((v) => v === noise).length;
  const entries = map.clusters.map((c, i) => ({ name: c.name || `Cluster ${c.id + 1}`, size: c.size, color: colors[i], members: i,
                                                medoids: c.medoid_image_ids.slice(0, 3) }));
  if (unclustered) entries.push({ name: "Not in a cluster", size: unclustered, color: NONE_COLOR, members: noise });
  return { values, colors, title: "Clusters", entries,
           name: (i) => (values[i] === noise ? "not in a cluster" : map.clusters[values[i]].name) };
}

function legend() {
  $("map-legend-title").textContent = categories.title;
  const gradientBox = $("map-gradient");
  gradientBox.hidden = !categories.range;
  if (categories.range) [$("map-gradient-from").textContent, $("map-gradient-to").textContent] = categories.range;
  const list = $("map-legend");
  list.innerHTML = "";
  for (const entry of categories.entries) {
    const li = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button"; button.className = "legend-entry";
    button.title = `Select and zoom to ${entry.name}`;
    button.innerHTML = '<span class="swatch" aria-hidden="true"></span><span class="name"></span><span class="size"></span>';
    button.querySelector(".swatch").style.background = entry.color;
    button.querySelector(".name").textContent = entry.name;
    button.querySelector(".size").textContent = entry.size.toLocaleString();
    if (entry.medoids && entry.medoids.length) {  // the photos nearest the cluster's mean: what it is about
      const strip = document.createElement("span");
      strip.className = "medoids";
      for (const id of entry.medoids) {
        const img = document.createElement("img");
        img.src = `/api/v1/images/${id}/thumbnail`; img.alt = ""; img.loading = "lazy";
        strip.appendChild(img);
      }
      button.appendChild(strip);
    }
    button.addEventListener("click", () => {
      const members = [];
      categories.values.forEach((v, i) => { if (v === entry.members) members.push(i); });
      selectPoints(members);
      if (plot && members.length) plot.zoomToPoints(members, { padding: 0.3, transition: true });
    });
    li.appendChild(button);
    list.appendChild(li);
  }
}

function pointData() {
  const p = map.points;
  const bright = hits ? p.image_id.map((id) => (hits.has(id) ? 1 : 0)) : new Array(p.image_id.length).fill(1);
  return { x: p.x, y: p.y, valueA: categories.values, valueB: bright };
}

// The library ignores a draw while the previous one runs: draws wait for each other, and each takes
// the colours, hits and selection as they are when its turn comes.
let drawing = Promise.resolve();
function drawPoints() {
  drawing = drawing.then(async () => {
    if (!plot || !map) return;
    plot.set({ pointColor: categories.colors });
    await plot.draw(pointData(), { zDataType: "categorical", wDataType: "categorical", select: mirrored, preventFilterReset: true });
    placeThumbs();
  });
  return drawing;
}

async function redraw() {
  categories = colouring($("map-color").value);
  legend();
  await drawPoints();
}

// The scatterplot (a WebGL context, ~0.2 s in software GL): made while the map is still on its way.
function makePlot() {
  if (plot) return true;
  if (webglMissing()) return false;
  plot = createScatterplot({
    canvas: $("map-canvas"), cameraDistance: home(),
    opacityBy: "valueB", opacity: [0.12, 1],  // search hits bright, the rest dim
    colorBy: "valueA",
    pointColorHover: "#1d2230", pointColorActive: "#e0245e", backgroundColor: "#ffffff",
    lassoColor: "#3757d8", lassoInitiator: false, deselectOnEscape: false, deselectOnDblClick: false,
  });
  plot.subscribe("pointOver", (i) => { hovered = i; tip(i); });
  plot.subscribe("pointOut", () => { hovered = null; $("map-tip").hidden = true; });
  plot.subscribe("lassoStart", () => { lasso = true; });
  plot.subscribe("select", ({ points }) => picked(points));
  plot.subscribe("view", () => scheduleThumbs());
  app.dataset.webgl = "1";
  return true;
}

const layoutOf = (body) => `${body.fitted_at}|${body.points.image_id.length}|${body.labels ? body.labels.support_set : ""}`;

async function show(body) {
  const first = !map;
  if (!first && layoutOf(body) === layoutOf(map)) { map = body; return; }  // a poll while nothing moved
  // A new layout numbers its points afresh: the selection follows the photos, not the numbers.
  const kept = plot && map ? plot.get("selectedPoints").map((i) => map.points.image_id[i]) : [];
  map = body;
  index = new Map(map.points.image_id.map((id, i) => [id, i]));
  if (plot) {
    mirrored = kept.map((id) => index.get(id)).filter((i) => i !== undefined);
    plot.deselect({ preventEvent: true });
  }
  $("map-layout").hidden = false;
  const n = map.points.image_id.length;
  status.textContent = `${plural(n, "photo")} in ${plural(map.clusters.length, "cluster")}`;
  if (first && !makePlot()) {
    status.textContent += ". This browser cannot draw the map: WebGL is turned off or unavailable.";
    app.dataset.webgl = "0";
  }
  if (plot) plot.set({ pointSize: n > 20000 ? 3 : n > 2000 ? 5 : 8 });
  await redraw();
  performance.mark("map-drawn");
  app.dataset.ready = "1";  // the first screen is drawn (tests and the timing wait for this)
  if (first && plot) highlight();
}

// ---- Hover, click, selection --------------------------------------------------------------------

function tip(i) {
  const box = $("map-tip");
  const [x, y] = plot.getScreenPosition(i);
  $("map-tip-img").src = `/api/v1/images/${map.points.image_id[i]}/thumbnail`;
  $("map-tip-text").textContent = categories.name(i);
  box.style.left = `${x}px`; box.style.top = `${y}px`;
  box.classList.toggle("left", x > $("map-stage").clientWidth / 2);
  box.hidden = false;
}

function openPhoto(i) {
  if (window.loupeViewer) window.loupeViewer.openId(String(map.points.image_id[i]), $("map-thumbs"));
}

let mirrored = [];  // the selection as select.js last heard it, so a click can put it back
function selectPoints(points) {
  mirrored = points;
  if (plot) { if (points.length) plot.select(points, { preventEvent: true }); else plot.deselect({ preventEvent: true }); }
  if (window.loupeSelection) window.loupeSelection.set(points.map((i) => map.points.image_id[i]));
  scheduleThumbs();
}

let merging = false;
// regl-scatterplot publishes "select" before it stores the selection: a selection set from inside the
// handler would be overwritten, so the answer to a click waits for the next task.
// A click may reach both the library (it hit a point) and the thumbnail test below (it hit a
// thumbnail); whichever answers first answers that press of the mouse.
let presses = 0, answered = -1;
function picked(points) {
  const fromLasso = lasso, press = presses;
  lasso = false;
  setTimeout(() => {
    if (!fromLasso && answered === press) { selectPoints(mirrored); return; }  // keep ours, not the library's
    answered = press;
    answer(points, fromLasso);
  });
}

function toggle(i) {
  selectPoints(mirrored.includes(i) ? mirrored.filter((j) => j !== i) : mirrored.concat(i));
}

function answer(points, fromLasso) {
  if (fromLasso) { selectPoints(points); return; }
  // With ⌘ the library merged the point in; with Ctrl it sent the clicked point alone.
  const clicked = points.length === 1 ? points[0] : hovered;
  if (merging && clicked !== null) { toggle(clicked); return; }  // Ctrl/⌘-click adds or removes one, as on the grid
  // A plain click on a point opens it; the selection stays what it was.
  selectPoints(mirrored);
  if (clicked !== null) openPhoto(clicked);
}

const canvas = $("map-canvas");
canvas.addEventListener("pointerdown", (e) => { presses++; merging = e.ctrlKey || e.metaKey; }, true);
// Thumbnails are larger than their points: a click on one that misses its point acts on it too.
canvas.addEventListener("click", (e) => {
  if (e.shiftKey || !thumbs.size) return;
  const press = presses;
  const box = canvas.getBoundingClientRect();
  const [x, y] = [e.clientX - box.left, e.clientY - box.top];
  setTimeout(() => {
    if (answered === press) return;
    let best = null, nearest = Infinity;  // of the thumbnails under the click, the one centred closest
    for (const [i, li] of thumbs) {
      const half = li.offsetWidth / 2;
      const [px, py] = plot.getScreenPosition(i);
      const d = Math.hypot(x - px, y - py);
      if (Math.abs(x - px) <= half && Math.abs(y - py) <= half && d < nearest) { best = i; nearest = d; }
    }
    if (best === null) return;
    answered = press;
    if (e.ctrlKey || e.metaKey) toggle(best); else openPhoto(best);
  });
});

document.addEventListener("loupe:selection", (e) => {
  if (!map || !plot) return;
  const points = e.detail.ids.map((id) => index.get(id)).filter((i) => i !== undefined);
  const now = plot.get("selectedPoints");
  if (points.length === now.length && points.every((p, k) => p === now[k])) return;
  mirrored = points;
  if (points.length) plot.select(points, { preventEvent: true }); else plot.deselect({ preventEvent: true });
  scheduleThumbs();
});
document.addEventListener("loupe:deleted", () => load());
if (window.loupeSelection) window.loupeSelection.allIds = () => (map ? map.points.image_id : []);

$("map-lasso").addEventListener("click", () => {
  const on = $("map-lasso").getAttribute("aria-pressed") !== "true";
  $("map-lasso").setAttribute("aria-pressed", String(on));
  if (plot) plot.set({ mouseMode: on ? "lasso" : "panZoom" });
});
// The library lassos with a mouse only: a finger's path (Lasso on) is drawn here and handed to it.
let finger = null;
canvas.addEventListener("pointerdown", (e) => {
  if (e.pointerType === "mouse" || !plot || $("map-lasso").getAttribute("aria-pressed") !== "true") return;
  e.preventDefault();
  try { canvas.setPointerCapture(e.pointerId); } catch (err) { /* a synthetic pointer has nothing to capture */ }
  plot.set({ cameraIsFixed: true });  // the drag draws; it does not pan
  finger = [];
  $("map-finger").hidden = false;
});
canvas.addEventListener("pointermove", (e) => {
  if (!finger) return;
  const box = canvas.getBoundingClientRect();
  finger.push([e.clientX - box.left, e.clientY - box.top]);
  $("map-finger-path").setAttribute("points", finger.map((p) => p.join(",")).join(" "));
});
canvas.addEventListener("pointerup", () => {
  if (!finger) return;
  const path = finger;
  finger = null;
  $("map-finger").hidden = true;
  plot.set({ cameraIsFixed: false });
  if (path.length < 3) return;
  lasso = true;
  plot.lassoSelect(path.map(([x, y]) => toData(x, y)), { isGl: true });
});

// Canvas pixels → the points' [-1, 1] space: the inverse of the library's projection (x / aspect
// ratio) and camera view (a 2-D affine map in a 4×4 matrix, column-major).
function toData(x, y) {
  const { clientWidth: w, clientHeight: h } = canvas;
  const cx = (-1 + (x / w) * 2) * (w / h), cy = 1 - (y / h) * 2;
  const v = plot.get("cameraView");
  const [a, b, c, d, tx, ty] = [v[0], v[1], v[4], v[5], v[12], v[13]];
  const det = a * d - b * c;
  return [(d * (cx - tx) - c * (cy - ty)) / det, (a * (cy - ty) - b * (cx - tx)) / det];
}
$("map-reset").addEventListener("click", () => { if (plot) plot.zoomToLocation([0, 0], home(), { transition: true }); });

// ---- Thumbnails when zoomed in ------------------------------------------------------------------

const thumbs = new Map();  // point index → its tile on the overlay
let thumbsQueued = false;
function scheduleThumbs() {
  if (thumbsQueued) return;
  thumbsQueued = true;
  requestAnimationFrame(() => { thumbsQueued = false; placeThumbs(); });
}

// About the gap to the nearest neighbour (its upper quartile): large enough to see, most photos still uncovered.
function thumbSize(points) {
  const gaps = points.map(([x, y], k) => {
    let best = Infinity;
    points.forEach(([u, v], j) => { if (j !== k) best = Math.min(best, Math.hypot(x - u, y - v)); });
    return best;
  }).sort((a, b) => a - b);
  const typical = gaps.length > 1 ? gaps[Math.floor(gaps.length * 0.75)] : 140;
  return Math.round(Math.min(140, Math.max(48, typical)));
}

function placeThumbs() {
  if (!plot || !map) return;
  const inView = plot.get("pointsInView");
  const layer = $("map-thumbs");
  const wanted = inView.length <= THUMBS_AT ? new Set(inView) : new Set();
  for (const [i, li] of thumbs) if (!wanted.has(i)) { li.remove(); thumbs.delete(i); }
  const at = new Map([...wanted].map((i) => [i, plot.getScreenPosition(i)]));
  layer.style.setProperty("--thumb", `${thumbSize([...at.values()])}px`);
  const chosen = new Set(plot.get("selectedPoints"));
  for (const i of wanted) {
    let li = thumbs.get(i);
    if (!li) {
      const id = map.points.image_id[i];
      li = document.createElement("li");
      li.className = "tile"; li.dataset.id = String(id);
      li.innerHTML = '<a class="open"><img alt="" decoding="async"></a>';
      const link = li.querySelector("a");
      link.href = `/images/${id}/`; link.dataset.src = `/api/v1/images/${id}/file`;
      li.querySelector("img").src = `/api/v1/images/${id}/thumbnail`;
      thumbs.set(i, li);
      layer.appendChild(li);
    }
    const [x, y] = at.get(i);
    li.classList.toggle("selected", chosen.has(i));
    li.style.transform = `translate(${x}px, ${y}px)`;
    li.classList.toggle("dim", Boolean(hits) && !hits.has(map.points.image_id[i]));
    li.style.borderColor = categories.colors[categories.values[i]];
  }
  app.dataset.thumbs = String(thumbs.size);
  placeNames(wanted.size > 0);
}

// Zoomed out, the largest clusters' names sit on the map at their most typical photo.
const NAMED = 12;
function placeNames(hidden) {
  const layer = $("map-names");
  layer.hidden = hidden || $("map-color").value !== "cluster";
  if (layer.hidden) return;
  const named = map.clusters.slice().sort((a, b) => b.size - a.size).slice(0, NAMED)
    .filter((c) => c.name && c.medoid_image_ids.length && index.has(c.medoid_image_ids[0]));
  if (layer.childElementCount !== named.length) {
    layer.innerHTML = "";
    for (const c of named) {
      const span = document.createElement("span");
      span.textContent = c.name;
      layer.appendChild(span);
    }
  }
  named.forEach((c, k) => {
    const [x, y] = plot.getScreenPosition(index.get(c.medoid_image_ids[0]));
    const span = layer.children[k];
    span.textContent = c.name;
    span.style.transform = `translate(${x}px, ${y}px) translate(-50%, -140%)`;
  });
}

// ---- Search hits ------------------------------------------------------------------------------------

const bar = $("album-bar");
const barText = $("bar-text");
const CARRIED = "loupe-query-image";  // an image the album bar hands over (static/js/searchbar.js)

let searches = 0;  // a newer search makes an older one's answer moot
async function highlight() {
  const mine = ++searches;
  const params = new URLSearchParams(location.search);
  const query = new FormData();
  let what = "";
  if (params.get("text")) { query.append("text", params.get("text")); what = `“${params.get("text")}”`; }
  const carried = sessionStorage.getItem(CARRIED);
  if (carried) {
    sessionStorage.removeItem(CARRIED);
    try {
      const { name, data } = JSON.parse(carried);
      query.append("image", new File([await (await fetch(data)).blob()], name));
      what = what ? `${what} and ${name}` : name;
    } catch (err) { /* a damaged hand-over: the reader picks the image again */ }
  } else if (params.get("image_id")) {
    query.append("image_id", params.get("image_id"));
    what = what || `photo #${params.get("image_id")}`;
  } else if (params.get("image_ids")) {
    const list = params.get("image_ids") === "selection" ? sessionStorage.getItem("loupe-query-ids") || "" : params.get("image_ids");
    const ids = list.split(",").filter((id) => /^\d+$/.test(id));
    for (const id of ids) query.append("image_ids", id);
    what = what || plural(ids.length, "photo");
  }
  if (!what || mine !== searches) { if (mine === searches) setHits(null); return; }
  $("map-matches").hidden = false;
  $("map-matches-text").textContent = `Searching ${what}…`;
  const found = new Set();
  let count = 0;
  query.set("page_size", "500");
  for (let page = 1; ; page++) {
    query.set("page", String(page));
    const [response, body] = await api(app.dataset.searchUrl, { method: "POST", body: query });
    if (mine !== searches) return;
    if (!response.ok) { $("map-matches-text").textContent = body.message || `The search failed (HTTP ${response.status})`; return; }
    for (const r of body.results) found.add(r.image_id);
    count = body.count;
    if (!body.results.length || page * body.page_size >= body.count) break;
  }
  setHits(found);
  const onMap = [...found].filter((id) => index.has(id)).length;
  $("map-matches-text").textContent = `${count.toLocaleString()} match${count === 1 ? "" : "es"} for ${what}` +
    (onMap < count ? ` (${onMap.toLocaleString()} on the map)` : "");
}

function setHits(found) {
  hits = found;
  $("map-matches").hidden = !found;
  if (categories) drawPoints();
}

$("map-matches-clear").addEventListener("click", () => {
  const url = new URL(location.href);
  for (const name of ["text", "image_id", "image_ids"]) url.searchParams.delete(name);
  history.replaceState(null, "", url);
  if (barText) barText.value = "";
  searches++;
  setHits(null);
});

// The album bar searches here: words highlight without leaving the page (an image reloads it, above).
if (bar) {
  if (barText && !barText.readOnly) barText.value = new URLSearchParams(location.search).get("text") || "";
  bar.addEventListener("submit", (e) => {
    e.preventDefault();
    const url = new URL(location.href);
    for (const name of ["text", "image_id", "image_ids"]) url.searchParams.delete(name);
    const words = barText && !barText.readOnly ? barText.value.trim() : "";
    if (words) url.searchParams.set("text", words);
    history.replaceState(null, "", url);
    if (plot && map) highlight();
  });
}

// ---- Colour choices -----------------------------------------------------------------------------

async function supportSets() {
  const choice = $("map-support-set");
  if (choice.options.length) return;
  const [response, body] = await api(app.dataset.supportSetsUrl);
  const sets = response.ok ? body.results || [] : [];
  for (const set of sets) choice.add(new Option(set.name, set.id));
  if (!sets.length) choice.add(new Option("No support sets yet (see Classify)", ""));
}

$("map-color").addEventListener("change", async () => {
  const mode = $("map-color").value;
  $("map-support-set").hidden = mode !== "label";
  remember();
  if (mode === "label") { await supportSets(); await load(); } else await redraw();
});
$("map-support-set").addEventListener("change", () => { remember(); load(); });

function remember() {
  const url = new URL(location.href);
  const mode = $("map-color").value;
  if (mode === "cluster") url.searchParams.delete("color"); else url.searchParams.set("color", mode);
  if (mode === "label" && $("map-support-set").value) url.searchParams.set("support_set", $("map-support-set").value);
  else url.searchParams.delete("support_set");
  history.replaceState(history.state, "", url);
}

async function start() {
  const params = new URLSearchParams(location.search);
  if (["date", "label"].includes(params.get("color"))) $("map-color").value = params.get("color");
  if ($("map-color").value === "label") {
    $("map-support-set").hidden = false;
    await supportSets();
    if (params.get("support_set")) $("map-support-set").value = params.get("support_set");
  }
  if (window.loupeViewer) window.loupeViewer.attach($("map-thumbs"));  // a shared ?view= link opens the photo
  const pending = api(app.dataset.url + supportSetParam());
  if (app.dataset.indexed === "1") {  // likely a map: the stage takes its size now, the plot its context
    $("map-layout").hidden = false;
    makePlot();
  }
  await load(pending);
}
start();
