// aria-busy on an element while any work handed to it runs (answers awaited, pages loading): for
// assistive technology, and what the browser tests wait on. Used by the search page and the grid.
window.loupeBusyTracker = function (element) {
  let running = 0;
  return async function busy(work) {
    running += 1;
    element.setAttribute("aria-busy", "true");
    try { return await work(); } finally {
      running -= 1;
      if (!running) element.setAttribute("aria-busy", "false");
    }
  };
};
