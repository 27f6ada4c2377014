// The search bar at the top of album pages (all but Search itself, whose form is the bar): words go
// to the search page in its address (the map keeps them and highlights the hits: static/js/map.js); an image chosen, dropped on the bar or pasted into it waits in
// sessionStorage for the search page, since a file cannot travel in a URL.
(function () {
  const form = document.getElementById("album-bar");
  if (!form) return;
  const KEY = "loupe-query-image";
  const MAX_BYTES = 4 * 1024 * 1024;  // sessionStorage holds ~5 MB of text; larger files are picked there
  const picker = document.getElementById("bar-image");

  // Words typed before the image was given travel with it: the search combines both.
  const target = (extra = {}) => {
    const params = new URLSearchParams(extra);
    const words = form.elements.text && form.elements.text.value.trim();
    if (words) params.set("text", words);
    return params.toString() ? `${form.action}?${params}` : form.action;
  };
  function go(file) {
    if (!file || !file.type.startsWith("image/")) return;
    if (file.size > MAX_BYTES) { location.href = target({ pick: "1" }); return; }
    const reader = new FileReader();
    reader.onload = () => {
      try { sessionStorage.setItem(KEY, JSON.stringify({ name: file.name || "pasted image", data: reader.result })); } catch (e) { /* full: pick again there */ }
      location.href = target();
    };
    reader.readAsDataURL(file);
  }
  if (picker) picker.addEventListener("change", () => go(picker.files[0]));
  form.addEventListener("dragover", (e) => { e.preventDefault(); form.classList.add("over"); });
  form.addEventListener("dragleave", () => form.classList.remove("over"));
  form.addEventListener("drop", (e) => {
    e.preventDefault();  // and the album page's drop-to-upload sees defaultPrevented
    form.classList.remove("over");
    go(e.dataTransfer.files[0]);
  });
  form.addEventListener("paste", (e) => {
    const item = Array.from(e.clipboardData.items).find((i) => i.type.startsWith("image/"));
    if (item) { e.preventDefault(); go(item.getAsFile()); }
  });
  form.addEventListener("submit", (e) => {
    const text = form.elements.text;
    if (!text || !text.value.trim()) e.preventDefault();
  });
})();
