// Live job page: a websocket feeds snapshots; when it cannot connect, the REST API is polled instead.
// Pages that render the outcome themselves (data-reload-when-finished on #job) reload once the job ends;
// the metric charts and error are drawn only where the page has their elements; the result is the page's own
// (the job page's summary is rendered by the server, reloaded when the job ends).
(function () {
  "use strict";
  const root = document.getElementById("job");
  if (!root) return;
  const FINISHED = ["succeeded", "failed", "cancelled"];
  const $ = (id) => document.getElementById(id);
  let done = false;
  let started = false; // set after the first snapshot: a job finished already when the page loaded never reloads it

  // The learning curve (ml/charts.py's learning_curve, drawn by charts.js) gets each snapshot's metrics in the
  // long form of ml.charts.metric_rows: one row per step and metric.
  function metricRows(metrics) {
    const rows = [];
    metrics.forEach((m, i) => {
      for (const [name, value] of Object.entries(m)) {
        if (name !== "step" && typeof value === "number" && Number.isFinite(value)) {
          rows.push({ step: m.step ?? i + 1, metric: name, value });
        }
      }
    });
    return rows;
  }

  let shownRows = null;
  function renderCharts(metrics, finished) {
    const box = document.querySelector("#job-charts [data-chart]");
    if (!box) return;
    const rows = metricRows(metrics);
    if (!rows.length && finished && $("job-charts-card")) $("job-charts-card").hidden = true; // nothing to wait for
    if ($("job-charts-waiting")) $("job-charts-waiting").hidden = rows.length > 0;
    const key = JSON.stringify(rows);
    if (key === shownRows || !window.platformCharts) return;
    shownRows = key;
    window.platformCharts.replace(box, "metrics", rows);
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
