// The photo page's "More like this": the nearest photos of the same album, from the API.
(async function () {
  const list = document.getElementById("similar");
  if (!list) return;
  const response = await fetch(list.dataset.url, { credentials: "same-origin" });
  const body = await response.json();
  list.innerHTML = "";
  const note = (text) => { const li = document.createElement("li"); li.className = "empty"; li.textContent = text; list.appendChild(li); };
  if (!response.ok) { note(body.message); return; }
  if (!body.results.length) { note("No similar photos above the album's threshold."); return; }
  for (const r of body.results) {
    const li = document.createElement("li");
    li.className = "tile photo";
    const link = document.createElement("a");
    link.className = "open"; link.href = `/images/${r.image_id}/`; link.title = `${r.original_name} · ${r.score.toFixed(4)}`;
    const img = document.createElement("img");
    img.src = r.thumbnail_url; img.alt = r.original_name; img.loading = "lazy";
    const score = document.createElement("span");
    score.className = "score"; score.textContent = r.score.toFixed(4);
    link.appendChild(img);
    li.append(link, score);
    list.appendChild(li);
  }
})();
