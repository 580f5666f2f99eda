// A federation's page, live: the server sends a snapshot whenever a party joins, a round opens, an update is
// accepted or a round is aggregated; when its fingerprint differs from the one shown, the page fetches itself
// again and swaps in its live part (rounds, charts, parties, payouts), redrawing the charts, without a reload.
(function () {
  let live = document.getElementById("federation-live");
  if (!live) return;
  let shown = live.dataset.fingerprint;
  const id = live.dataset.federationId;
  let busy = false;
  let again = false;

  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    fetch(window.location.href, { credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.text();
      })
      .then(function (html) {
        const fresh = new DOMParser().parseFromString(html, "text/html").querySelector("[data-live-root]");
        const old = document.querySelector("[data-live-root]");
        if (!fresh || !old) { window.location.reload(); return; }
        old.replaceWith(fresh);
        const marker = document.getElementById("federation-live");
        if (marker) { live = marker; shown = marker.dataset.fingerprint; live.textContent = "live"; }
        else { shown = null; } // finished or failed: nothing more will change
        if (window.platformCharts) window.platformCharts.drawAll(fresh);
      })
      .catch(function () { window.location.reload(); })
      .finally(function () {
        busy = false;
        if (again) { again = false; refresh(); }
      });
  }

  function connect() {
    const scheme = window.location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(scheme + "://" + window.location.host + "/ws/federations/" + id + "/");
    let opened = false;
    ws.onopen = function () { opened = true; live.textContent = "live"; };
    ws.onmessage = function (e) {
      const snapshot = JSON.parse(e.data);
      if (shown && snapshot.fingerprint && snapshot.fingerprint !== shown) refresh();
    };
    ws.onclose = function () {
      live.textContent = opened ? "reconnecting…" : "live updates unavailable";
      if (opened && shown) window.setTimeout(connect, 2000);
    };
  }
  connect();
})();
