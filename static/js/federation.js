// A federation's page, live: the server sends a snapshot whenever a round opens, an update is accepted or a
// round is aggregated; when its fingerprint differs from the one the page was rendered with, the page reloads
// (the rounds table and charts are drawn on the server).
(function () {
  const root = document.getElementById("federation-live");
  if (!root) return;
  const rendered = root.dataset.fingerprint;
  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${scheme}://${location.host}/ws/federations/${root.dataset.federationId}/`);
    let opened = false;
    ws.onopen = () => { opened = true; root.textContent = "live"; };
    ws.onmessage = (e) => {
      const snapshot = JSON.parse(e.data);
      if (snapshot.fingerprint && snapshot.fingerprint !== rendered) location.reload();
    };
    ws.onclose = () => {
      root.textContent = opened ? "reconnecting…" : "live updates unavailable";
      if (opened) setTimeout(connect, 2000);
    };
  }
  connect();
})();
