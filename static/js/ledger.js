// Live ledger explorer: new entries arrive over /ws/ledger/ and go on top of the first page's table.
(function () {
  "use strict";
  const rows = document.getElementById("ledger-rows");
  if (!rows || rows.dataset.live !== "1") return;
  const $ = (id) => document.getElementById(id);
  const f = rows.dataset;
  const pageSize = parseInt(f.pageSize, 10) || 50;
  let after = parseInt(f.after, 10);
  let delay = 1000;

  function status(text, on) {
    $("ledger-live").textContent = text;
    $("ledger-live-dot").className = on ? "live-dot on" : "live-dot";
  }

  // The same filters the server applied, so a filtered page only grows with entries that match.
  function matches(e) {
    if (f.kind && (f.kind.endsWith(".") ? !e.kind.startsWith(f.kind) : e.kind !== f.kind)) return false;
    if (f.actor && e.actor !== f.actor) return false;
    if (f.seqMin !== "" && e.seq < parseInt(f.seqMin, 10)) return false;
    if (f.seqMax !== "" && e.seq > parseInt(f.seqMax, 10)) return false;
    return true;
  }

  function cell(tr, cls) {
    const td = document.createElement("td");
    if (cls) td.className = cls;
    tr.appendChild(td);
    return td;
  }

  function link(href, text, code) {
    const a = document.createElement("a");
    a.href = href;
    if (code) {
      const c = document.createElement("code");
      c.textContent = text;
      a.appendChild(c);
    } else {
      a.textContent = text;
    }
    return a;
  }

  function row(e) {
    const tr = document.createElement("tr");
    tr.dataset.seq = e.seq;
    tr.className = "fresh";
    cell(tr, "num").appendChild(link(e.url, `#${e.seq}`));
    cell(tr).appendChild(link(`?kind=${encodeURIComponent(e.kind)}`, e.kind, true));
    cell(tr).appendChild(link(`?actor=${encodeURIComponent(e.actor)}`, e.actor));
    const time = document.createElement("time");
    time.dateTime = e.created_at;
    time.textContent = e.created;
    cell(tr).appendChild(time);
    const hash = document.createElement("code");
    hash.title = e.entry_hash;
    hash.textContent = `${e.short_hash}…`;
    cell(tr).appendChild(hash);
    cell(tr, "amount").textContent = e.amount || "—";
    return tr;
  }

  function add(e) {
    after = Math.max(after, e.seq);
    const size = $("ledger-size");
    const shown = parseInt(size.textContent.replace(/[^0-9]/g, ""), 10) || 0;
    if (e.seq + 1 > shown) size.textContent = (e.seq + 1).toLocaleString("en-US");
    if (!matches(e) || rows.querySelector(`tr[data-seq="${e.seq}"]`)) return;
    const empty = $("ledger-empty");
    if (empty) empty.remove();
    rows.insertBefore(row(e), rows.firstElementChild);
    while (rows.children.length > pageSize) rows.lastElementChild.remove();
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${scheme}://${location.host}/ws/ledger/?after=${after}`);
    let opened = false;
    let refresher = null;
    ws.onopen = () => {
      opened = true;
      delay = 1000;
      status("live", true);
      // Pushes are best effort; asking now and then for what was missed heals a lost one.
      refresher = setInterval(() => ws.send(JSON.stringify({ type: "refresh" })), 15000);
    };
    ws.onmessage = (m) => {
      const msg = JSON.parse(m.data);
      if (msg.type === "entry") add(msg.entry);
    };
    ws.onclose = () => {
      clearInterval(refresher);
      status(opened ? "reconnecting…" : "live updates unavailable; reload for new entries", false);
      // Reconnects ask for everything after the newest seq seen, so nothing is lost while away.
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 30000);
    };
  }

  connect();
})();
