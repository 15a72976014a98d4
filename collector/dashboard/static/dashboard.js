// Vantage dashboard: the pages work without this file. It only watches the collector while a page is
// open and says so when it stops answering, so nobody mistakes stale figures for current ones.
(function () {
  "use strict";
  var loadedAt = new Date();
  var banner = null;

  function show(text) {
    banner = banner || document.getElementById("status");
    if (!banner) return;
    banner.textContent = text;
    banner.hidden = false;
  }

  function hide() {
    banner = banner || document.getElementById("status");
    if (banner) banner.hidden = true;
  }

  function hhmm(date) {
    return date.toISOString().slice(0, 16).replace("T", " ");
  }

  function unreachable(reason) {
    show("The collector is unreachable (" + reason + "). What this page shows was loaded at " +
      hhmm(loadedAt) + " UTC and may be out of date; it will update when the collector answers again.");
  }

  function check() {
    var controller = window.AbortController ? new AbortController() : null;
    var timer = controller ? setTimeout(function () { controller.abort(); }, 5000) : null;
    return fetch("/healthz", { cache: "no-store", signal: controller ? controller.signal : undefined })
      .then(function (response) {
        if (response.ok) { hide(); return true; }
        return response.json().then(function (body) {
          var message = body && body.error ? body.error.message : "HTTP " + response.status;
          unreachable("it answered " + response.status + ": " + message);
          return false;
        }, function () { unreachable("it answered HTTP " + response.status); return false; });
      }, function (error) {
        unreachable(error && error.name === "AbortError" ? "no answer within 5 seconds" : "no connection");
        return false;
      })
      .finally(function () { if (timer) clearTimeout(timer); });
  }

  window.vantageDashboard = { check: check };
  setInterval(check, 30000);
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible") check();
  });
})();
