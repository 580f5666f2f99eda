// Live job page: a websocket feeds snapshots; when it cannot connect, the REST API is polled instead.
// Pages that render the outcome themselves (data-reload-when-finished on #job) reload once the job ends;
// the metric charts and error are drawn only where the page has their elements; the result is the page's own
// (the job page's summary is rendered by the server, reloaded when the job ends).
(function () {
  "use strict";
  const root = document.getElementById("job");
  if (!root) return;
  const FINISHED = ["succeeded", "failed", "cancelled"];
  const COLORS = ["#2f6fde", "#1f9d55", "#c47f00", "#cc3340", "#7a4cc2", "#0e8f8f"];
  const $ = (id) => document.getElementById(id);
  const svgNS = "http://www.w3.org/2000/svg";
  let done = false;
  let started = false; // set after the first snapshot: a job finished already when the page loaded never reloads it

  function el(name, attrs, text) {
    const node = document.createElementNS(svgNS, name);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function lineChart(name, points, color) {
    const W = 520, H = 200, L = 48, R = 10, T = 14, B = 24;
    const svg = el("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": name });
    const xs = points.map((p) => p[0]), ys = points.map((p) => p[1]);
    let x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
    if (x0 === x1) { x0 -= 1; x1 += 1; }
    if (y0 === y1) { y0 -= Math.abs(y0) * 0.1 || 1; y1 += Math.abs(y1) * 0.1 || 1; }
    const sx = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
    const sy = (y) => H - B - ((y - y0) / (y1 - y0)) * (H - T - B);
    for (let i = 0; i <= 4; i++) {
      const y = y0 + ((y1 - y0) * i) / 4;
      svg.appendChild(el("line", { class: "gridline", x1: L, x2: W - R, y1: sy(y), y2: sy(y) }));
      svg.appendChild(el("text", { x: L - 4, y: sy(y) + 4, "text-anchor": "end" }, +y.toPrecision(3)));
    }
    svg.appendChild(el("line", { class: "axis", x1: L, x2: W - R, y1: H - B, y2: H - B }));
    svg.appendChild(el("text", { x: L, y: H - 6 }, `step ${x0}`));
    svg.appendChild(el("text", { x: W - R, y: H - 6, "text-anchor": "end" }, `step ${x1}`));
    svg.appendChild(el("text", { x: L + 4, y: 11 }, name));
    const d = points.map((p, i) => `${i ? "L" : "M"}${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join("");
    svg.appendChild(el("path", { d, fill: "none", stroke: color, "stroke-width": 2 }));
    for (const p of points) {
      const dot = el("circle", { cx: sx(p[0]), cy: sy(p[1]), r: 3, fill: color });
      dot.appendChild(el("title", {}, `step ${p[0]}: ${name} ${p[1]}`));
      svg.appendChild(dot);
    }
    return svg;
  }

  function renderCharts(metrics, finished) {
    const box = $("job-charts");
    if (!box) return;
    box.replaceChildren();
    const keys = [];
    for (const m of metrics) for (const k of Object.keys(m)) if (k !== "step" && !keys.includes(k)) keys.push(k);
    if (!keys.length) {
      // A finished job that reported no metrics has nothing to wait for: its card goes.
      if (finished && $("job-charts-card")) $("job-charts-card").hidden = true;
      else box.textContent = "Waiting for the first step…";
      return;
    }
    keys.forEach((k, i) => {
      const pts = metrics.filter((m) => typeof m[k] === "number").map((m, j) => [m.step ?? j + 1, m[k]]);
      if (pts.length) box.appendChild(lineChart(k, pts, COLORS[i % COLORS.length]));
    });
  }

  function render(job) {
    const pct = Math.round((job.progress || 0) * 100);
    // Every badge of this job on the page (the card's, a heading's) follows the snapshot.
    const label = job.status.charAt(0).toUpperCase() + job.status.slice(1);
    for (const badge of document.querySelectorAll("#job-status, [data-job-status-badge]")) {
      badge.textContent = label;
      badge.className = `badge ${job.status}`;
    }
    const bar = $("job-progress");
    bar.className = `progress ${job.status}`;
    bar.setAttribute("aria-valuenow", pct);
    bar.firstElementChild.style.width = `${pct}%`;
    $("job-percent").textContent = `${pct}%`;
    $("job-message").textContent = job.message || "";
    if ($("job-attempts")) $("job-attempts").textContent = job.attempts ?? "";
    if ($("job-worker")) $("job-worker").textContent = job.worker || "—";
    renderCharts(job.metrics || [], FINISHED.includes(job.status));
    if ($("job-error-card")) {
      $("job-error-card").hidden = !job.error;
      $("job-error").textContent = job.error || "";
    }
    if (FINISHED.includes(job.status)) {
      const wasRunning = !done && started;
      done = true;
      const cancel = $("job-cancel");
      if (cancel) cancel.remove();
      $("job-live").textContent = "finished";
      if (wasRunning && "reloadWhenFinished" in root.dataset) {
        $("job-live").textContent = "finished; loading the result…";
        location.reload();
      }
    }
    started = true;
  }

  function poll() {
    if (done) return;
    fetch(root.dataset.apiUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then((r) => (r.ok ? r.json() : null))
      .then((job) => { if (job) render(job); })
      .finally(() => { if (!done) setTimeout(poll, 2000); });
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${scheme}://${location.host}/ws/jobs/${root.dataset.jobId}/`);
    let opened = false;
    let refresher = null;
    ws.onopen = () => {
      opened = true;
      $("job-live").textContent = "live";
      // Pushes are best effort; asking for a snapshot now and then heals one that was lost.
      refresher = setInterval(() => { if (!done) ws.send(JSON.stringify({ type: "refresh" })); }, 10000);
    };
    ws.onmessage = (e) => render(JSON.parse(e.data));
    ws.onclose = () => {
      clearInterval(refresher);
      if (done) return;
      $("job-live").textContent = opened ? "reconnecting…" : "live updates unavailable; polling";
      if (opened) setTimeout(connect, 1000); else poll();
    };
  }

  render(JSON.parse($("job-snapshot").textContent));
  if (!done) connect();
})();
