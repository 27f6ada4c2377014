// One query-image input for the search and classify pages: the file picker, drag and drop onto the
// zone, and paste anywhere on the page all hand the file to `onFile`.
window.loupeImageInput = function (input, drop, onFile) {
  input.addEventListener("change", () => { if (input.files[0]) onFile(input.files[0]); });
  // A file chosen while the page was still loading, before this script ran, sent no event we saw.
  if (input.files && input.files[0]) onFile(input.files[0]);
  ["dragenter", "dragover"].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.add("over"); }));
  ["dragleave", "drop"].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.remove("over"); }));
  drop.addEventListener("drop", (e) => { if (e.dataTransfer.files[0]) onFile(e.dataTransfer.files[0]); });
  document.addEventListener("paste", (e) => {
    const item = Array.from(e.clipboardData.items).find((i) => i.type.startsWith("image/"));
    if (item) onFile(item.getAsFile());
  });
};
