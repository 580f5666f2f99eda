// A dataset's page: the analysis form shows the chosen analysis's options only, and the owner's draft follows
// its statistics job, swapping in the statistics and the Publish button (or the failure) when the job ends.
(function () {
  "use strict";

  // Each fieldset with data-kind="<analysis>" holds that analysis's own options; those with an empty kind
  // (ε, preprocessing) apply to every analysis. Hidden fieldsets are also disabled, so the server applies its
  // defaults for them. Without this script every fieldset shows, as the server renders them.
  function analysisForm(root) {
    const form = root.querySelector("[data-testid=analysis-form]");
    if (!form) return;
    const select = form.querySelector("select[name=analysis]");
    if (!select) return;
    const show = function () {
      form.querySelectorAll("fieldset[data-kind]").forEach(function (fieldset) {
        const kind = fieldset.dataset.kind;
        const shown = !kind || kind === select.value;
        fieldset.hidden = !shown;
        fieldset.disabled = !shown;
      });
    };
    select.addEventListener("change", show);
    show();
  }

  // While the newest version's statistics are computed, ask the server every few seconds; when they are
  // ready or have failed, fetch the page again and replace its body, so nothing has to be reloaded by hand.
  function followDraft(root) {
    const pending = root.querySelector("[data-poll]");
    if (!pending) return;
    const url = pending.dataset.poll;
    let delay = 1500;
    const tick = function () {
      fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
        .then(function (response) {
          if (!response.ok) throw new Error("HTTP " + response.status);
          return response.json();
        })
        .then(function (state) {
          if (state.status === "processing") {
            delay = Math.min(delay * 1.3, 10000);
            window.setTimeout(tick, delay);
            return;
          }
          return refresh();
        })
        .catch(function () {
          window.setTimeout(tick, 10000);
        });
    };
    window.setTimeout(tick, delay);
  }

  function refresh() {
    return fetch(window.location.href, { credentials: "same-origin" })
      .then(function (response) { return response.text(); })
      .then(function (html) {
        const fresh = new DOMParser().parseFromString(html, "text/html").querySelector("[data-live-root]");
        const old = document.querySelector("[data-live-root]");
        if (!fresh || !old) { window.location.reload(); return; }
        old.replaceWith(fresh);
        init(fresh);
        if (window.platformCharts) window.platformCharts.drawAll(fresh);
      });
  }

  function init(root) {
    analysisForm(root);
    followDraft(root);
  }

  init(document);
})();
