// capstan dashboard: refreshes <main> from /dashboard/fragment every 2 s
// and filters the routes table. No dependencies; works without it too.
(function () {
  "use strict";
  var main = document.getElementById("dashboard");
  var offline = document.getElementById("offline");
  var box = function () { return document.getElementById("route-filter"); };

  function applyFilter() {
    var input = box();
    var q = input ? input.value.trim().toLowerCase() : "";
    var routes = main.querySelectorAll("tbody.route");
    for (var i = 0; i < routes.length; i++) {
      routes[i].hidden = q !== "" && routes[i].textContent.toLowerCase().indexOf(q) < 0;
    }
  }

  function refresh(html) {
    var input = box();
    var typed = input ? input.value : "";
    var focused = input !== null && document.activeElement === input;
    var start = focused ? input.selectionStart : null;
    var end = focused ? input.selectionEnd : null;
    main.innerHTML = html;
    var sync = document.getElementById("sync");
    if (sync && sync.dataset.updated) main.dataset.updated = sync.dataset.updated;
    var fresh = box();
    if (fresh) {
      fresh.value = typed;
      if (focused) {
        fresh.focus();
        try { fresh.setSelectionRange(start, end); } catch (e) { /* not a text field */ }
      }
    }
    applyFilter();
  }

  function poll() {
    var input = box();
    var q = input ? input.value.trim() : "";
    fetch("/dashboard/fragment?q=" + encodeURIComponent(q), {
      credentials: "same-origin",
      cache: "no-store"
    }).then(function (response) {
      if (!response.ok) throw new Error("HTTP " + response.status);
      return response.text();
    }).then(function (html) {
      refresh(html);
      offline.hidden = true;
    }).catch(function (error) {
      var last = main.dataset.updated ? new Date(main.dataset.updated) : null;
      offline.textContent = "capstan is not answering (" + error.message + "); last update " +
        (last ? last.toLocaleTimeString() : "unknown") + ". Retrying every 2 s.";
      offline.hidden = false;
    }).then(function () {
      window.setTimeout(poll, 2000);
    });
  }

  main.addEventListener("input", function (event) {
    if (event.target.id === "route-filter") applyFilter();
  });
  main.addEventListener("submit", function (event) {
    // Filter in place; the address keeps the filter for a reload.
    event.preventDefault();
    var input = box();
    var q = input ? input.value.trim() : "";
    window.history.replaceState(null, "", q ? "?q=" + encodeURIComponent(q) : window.location.pathname);
    applyFilter();
  });
  applyFilter();
  window.setTimeout(poll, 2000);
})();
