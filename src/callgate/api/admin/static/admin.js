// The status page's own script: say so when the page stops updating (the service does not
// answer), so that an old picture is never taken for the current one.
(function () {
  "use strict";
  function stale(on) {
    var note = document.getElementById("stale");
    if (note) { note.hidden = !on; }
    document.body.classList.toggle("stale", on);
  }
  document.addEventListener("htmx:sendError", function () { stale(true); });
  document.addEventListener("htmx:responseError", function () { stale(true); });
  document.addEventListener("htmx:afterSwap", function () { stale(false); });
})();
