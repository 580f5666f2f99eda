// Draws every chart on the page with the vendored Vega-Lite (static/vendor/vega), from the specs that
// ml/charts.py builds: each <div data-chart="ID"> reads the JSON of <script id="ID">. The library is loaded
// only on pages that have a chart. Until it draws, the box says where the numbers are (the table under it).
// window.platformCharts.drawAll(root) draws the charts under root (HTML swapped in later); .replace(box, name,
// rows) swaps a named data set (live charts: a job page's learning curve).
(function () {
  "use strict";
  const me = document.currentScript;
  let library = null;

  function load(src) {
    return new Promise((resolve, reject) => {
      const s = document.createElement("script");
      s.src = src;
      s.onload = resolve;
      s.onerror = () => reject(new Error(`could not load ${src}`));
      document.head.appendChild(s);
    });
  }

  function ready() {
    // vega-lite needs vega, and vega-embed both: loaded in that order, once.
    library = library || load(me.dataset.vega).then(() => load(me.dataset.vegaLite)).then(() => load(me.dataset.vegaEmbed));
    return library;
  }

  // Small multiples are laid out in as many columns as fit the box, each panel as wide as a column allows;
  // a legend of many entries wraps in fewer columns on a phone.
  function fit(spec, box) {
    const out = JSON.parse(JSON.stringify(spec));
    if (box.clientWidth < 480 && out.config && out.config.legend) out.config.legend.columns = 2;
    if (out.spec && out.spec.width === "container") {
      const room = Math.max(box.clientWidth, 240);
      const columns = Math.max(1, Math.min(out.columns || 1, Math.floor(room / 190)));
      out.columns = columns;
      out.spec.width = Math.max(Math.floor(room / columns) - 60, 110);
    }
    return out;
  }

  // The newest data a live page gave a box (see replace), applied to its view.
  function applyLatest(box, view) {
    const latest = box.latestData;
    if (!view || !latest) return Promise.resolve(view);
    box.latestData = null;
    const change = window.vega.changeset().remove(() => true).insert(latest.rows);
    return view.change(latest.name, change).runAsync().then(() => view);
  }

  function draw(box, spec) {
    box.chartReady = ready().then(() =>
      window.vegaEmbed(box, fit(spec, box), {
        renderer: "svg",
        actions: { export: true, source: false, compiled: false, editor: false },
        downloadFileName: box.dataset.chart || "chart",
        tooltip: { theme: "light" },
      })
    ).then((result) => {
      box.classList.add("drawn");
      return applyLatest(box, result.view);
    }).catch((error) => {
      box.classList.add("failed");
      box.textContent = `The chart could not be drawn (${error.message}); its numbers are in the table below.`;
      return null;
    });
    return box.chartReady;
  }

  // Replaces the named data set of a box's chart: at once when it is drawn, else as soon as it is.
  function replace(box, name, rows) {
    box.latestData = { name, rows };
    if (box.chartReady) box.chartReady = box.chartReady.then((view) => applyLatest(box, view));
    return box.chartReady || Promise.resolve(null);
  }

  // Draws the charts in `root` not drawn yet (pages that swap in fresh HTML call it on the new part).
  function drawAll(root) {
    for (const box of (root || document).querySelectorAll("[data-chart]")) {
      const source = document.getElementById(box.dataset.chart);
      if (source && !box.chartReady) draw(box, JSON.parse(source.textContent));
    }
  }
  window.platformCharts = { draw, drawAll, replace, ready };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", () => drawAll());
  else drawAll();
})();
