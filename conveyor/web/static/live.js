// conveyor dashboard: live updates over server-sent events. The pages are complete without
// this script; it only keeps states and progress bars current without reloading.
(function () {
  "use strict";
  var base = document.body.getAttribute("data-base") || "";
  var live = document.getElementById("live");

  function listen(path, onJob) {
    if (!window.EventSource) return null;
    var source = new EventSource(base + path);
    source.onopen = function () { if (live) live.hidden = false; };
    source.onerror = function () { if (live) live.hidden = true; };
    source.addEventListener("job", function (message) {
      var event;
      try { event = JSON.parse(message.data); } catch (e) { return; }
      onJob(event, source);
    });
    return source;
  }

  function setBadge(badge, state) {
    if (!badge) return;
    badge.textContent = state;
    badge.className = "badge s-" + state;
  }

  var FINAL = { succeeded: 1, failed: 1, cancelled: 1, expired: 1 };

  // One job: state and progress move in place; once final, reload to show result or error.
  var article = document.querySelector("[data-job-page]");
  if (article && article.getAttribute("data-final") !== "true") {
    var id = article.getAttribute("data-job-page");
    var box = document.getElementById("progress");
    listen("/api/jobs/" + encodeURIComponent(id) + "/events", function (event, source) {
      setBadge(article.querySelector("[data-state]"), event.state);
      if (event.progress) {
        var pct = Math.max(0, Math.min(100, Number(event.progress.percent) || 0));
        box.hidden = false;
        box.querySelector("[data-bar]").style.width = pct + "%";
        box.querySelector("[data-pct]").textContent = pct.toFixed(0) + "%";
        box.querySelector("[data-msg]").textContent = event.progress.message || "";
        var data = box.querySelector("[data-data]");
        var keys = event.progress.data ? Object.keys(event.progress.data) : [];
        data.hidden = keys.length === 0;
        var text = keys.length ? JSON.stringify(event.progress.data) : "";
        data.textContent = text.length > 100 ? JSON.stringify(event.progress.data, null, 2) : text;
      }
      // the actions that fit the new state (cancel while waiting or running, retry after)
      var actions = article.querySelectorAll("[data-when]");
      for (var i = 0; i < actions.length; i++) {
        actions[i].hidden = actions[i].getAttribute("data-when").split(" ").indexOf(event.state) < 0;
      }
      if (FINAL[event.state]) {
        // the result or the error and its traceback are on the page the server renders
        source.close();
        window.location.reload();
      }
    });
  }

  // The jobs list: rows on this page follow their jobs; new jobs are offered, not pushed in.
  var table = document.getElementById("jobs");
  if (table) {
    var notice = document.getElementById("newjobs");
    // only the unfiltered first page offers new jobs (others may not match their filters)
    var firstPage = window.location.search === "";
    listen("/api/events", function (event) {
      var row = table.querySelector('tr[data-job="' + CSS.escape(event.job_id) + '"]');
      if (!row) {
        if (firstPage && notice && event.state !== "running") notice.hidden = false;
        return;
      }
      setBadge(row.querySelector("[data-state]"), event.state);
      var cell = row.querySelector("[data-progress]");
      if (cell && event.progress) {
        var pct = Math.max(0, Math.min(100, Number(event.progress.percent) || 0));
        cell.textContent = "";
        var bar = document.createElement("span");
        bar.className = "bar";
        bar.title = event.progress.message || "";
        var fill = document.createElement("span");
        fill.style.width = pct + "%";
        bar.appendChild(fill);
        var label = document.createElement("span");
        label.className = "pct";
        label.textContent = pct.toFixed(0) + "%";
        cell.appendChild(bar);
        cell.appendChild(label);
      }
    });
  }
})();
