// Live refresh by polling: /api/status is cheap (one Redis read); when the cache version or the health
// changes, every element with data-fragment is re-rendered from its server-side fragment; when only the
// feeder's figures change (lag, records, Spark batches: they move without a cache write), only the
// elements marked data-follows-figures are. No inline
// scripts (CSP script-src 'self'); server HTML is escaped by Jinja, this file inserts no user data itself.
(function () {
  "use strict";
  var body = document.body;
  var statusUrl = body.getAttribute("data-status-url");
  var interval = parseInt(body.getAttribute("data-refresh-ms"), 10) || 2000;
  var version = body.getAttribute("data-version") || "";
  var signature = body.getAttribute("data-signature") || "";
  var figures = body.getAttribute("data-figures") || "";
  var offline = document.getElementById("offline");
  var busy = false;
  var timer = null;

  function reloadFragments(selector) {
    var elements = document.querySelectorAll(selector);
    return Promise.all(Array.prototype.map.call(elements, function (el) {
      return fetch(el.getAttribute("data-fragment"), { cache: "no-store", credentials: "same-origin" })
        .then(function (r) { return r.text(); })
        .then(function (html) { el.innerHTML = html; });
    }));
  }

  function tick() {
    if (busy) { return; }  // the request in flight schedules the next tick
    if (document.hidden) { return schedule(); }
    busy = true;
    fetch(statusUrl, { cache: "no-store", credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.json(); })
      .then(function (s) {
        if (offline) { offline.hidden = true; }
        var v = s.version === null || s.version === undefined ? "" : String(s.version);
        var f = s.figures || "";
        var changed = f !== figures;
        figures = f;
        if (v !== version || s.signature !== signature) {
          version = v;
          signature = s.signature;
          body.setAttribute("data-version", v);
          return reloadFragments("[data-fragment]");
        }
        if (changed) { return reloadFragments("[data-fragment][data-follows-figures]"); }
      })
      .catch(function () { if (offline) { offline.hidden = false; } })
      .then(function () { busy = false; schedule(); });
  }

  function schedule() {
    if (timer !== null) { window.clearTimeout(timer); }
    timer = window.setTimeout(tick, interval);
  }
  document.addEventListener("visibilitychange", function () { if (!document.hidden) { tick(); } });
  schedule();
})();
