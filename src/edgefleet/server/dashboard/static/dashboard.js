// edgefleet dashboard: progressive enhancement only. Pages work without it; with it, live sections
// refresh while a rollout runs and charts are drawn with the bundled uPlot.
(function () {
  "use strict";

  function startLive(el) {
    var src = el.getAttribute("data-live-src");
    var interval = parseInt(el.getAttribute("data-live-interval-ms") || "3000", 10);
    var last = null;
    var timer = null;
    function tick() {
      if (document.hidden) { timer = setTimeout(tick, interval); return; }
      fetch(src, { credentials: "same-origin", headers: { "X-Requested-With": "dashboard" } })
        .then(function (r) {
          if (r.redirected || r.status === 401) { window.location.reload(); return null; }
          return r.ok ? r.text() : null;
        })
        .then(function (html) {
          var final = false;
          // Keep keyboard focus: never swap the region while the user is inside it.
          if (html !== null && html !== last && !el.contains(document.activeElement)) {
            el.innerHTML = html;
            last = html;
            el.setAttribute("data-updated-at", new Date().toISOString());
            drawCharts(el);
          }
          final = !!el.querySelector("[data-final='true']");
          if (!final) { timer = setTimeout(tick, interval); }
        })
        .catch(function () { timer = setTimeout(tick, interval * 2); });
    }
    timer = setTimeout(tick, interval);
  }

  function readJson(id) {
    var node = document.getElementById(id);
    return node ? JSON.parse(node.textContent) : null;
  }

  function size(el) {
    return { width: Math.max(el.clientWidth, 280), height: 220 };
  }

  function barChart(el, data) {
    var xs = data.values.map(function (_, i) { return i; });
    var opts = Object.assign(size(el), {
      legend: { show: false },
      scales: { x: { time: false, range: [-0.5, xs.length - 0.5] }, y: { range: function (u, lo, hi) { return [0, Math.max(1, hi * 1.1)]; } } },
      axes: [
        { values: function (u, splits) { return splits.map(function (i) { var l = data.labels[i]; return l === undefined ? "" : (l.length > 18 ? l.slice(0, 17) + "…" : l); }); }, incrs: [1] },
        { label: "devices" }
      ],
      series: [{}, { label: "devices", fill: "rgba(10,88,202,0.55)", stroke: "#0a58ca", paths: uPlot.paths.bars({ size: [0.6, 80] }), points: { show: false } }]
    });
    return new uPlot(opts, [xs, data.values], el);
  }

  function lineChart(el, data, key) {
    var opts = Object.assign(size(el), {
      legend: { show: false },
      series: [{}, { label: key, stroke: key === "errors" ? "#b3261e" : "#0a58ca", width: 2, spanGaps: false }],
      axes: [{}, {}]
    });
    return new uPlot(opts, [data.x, data[key]], el);
  }

  function drawCharts(root) {
    if (typeof uPlot === "undefined") { return; }
    root.querySelectorAll("[data-chart]").forEach(function (el) {
      if (el.getAttribute("data-drawn")) { return; }
      var data = readJson(el.getAttribute("data-source"));
      if (!data) { return; }
      var kind = el.getAttribute("data-chart");
      if (kind === "bars") { barChart(el, data); }
      else if (kind === "line" && data.x && data.x.length) { lineChart(el, data, el.getAttribute("data-series")); }
      else { el.textContent = "No data in this period."; }
      el.setAttribute("data-drawn", "true");
    });
  }

  function loadOnce(el) {
    fetch(el.getAttribute("data-load-src"), { credentials: "same-origin", headers: { "X-Requested-With": "dashboard" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) { if (html !== null) { el.innerHTML = html; drawCharts(el); } })
      .catch(function () {});
  }

  document.addEventListener("DOMContentLoaded", function () {
    drawCharts(document);
    document.querySelectorAll("[data-load-src]").forEach(loadOnce);
    document.querySelectorAll("[data-live-src]").forEach(startLive);
  });
})();
