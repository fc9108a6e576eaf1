// gradkit report.html: sortable tables and interactive loss-curve charts.
// Plain JavaScript inlined into the page by gradkit.bench.html; no dependencies, no requests.
(function () {
  "use strict";

  // ---- sortable tables ---------------------------------------------------------------
  // Click a column header: rows sort by the cells' numeric data-sort keys when the column
  // has any (cells without a key go last), else by their text; a second click reverses.
  var collator = new Intl.Collator(undefined, { numeric: true, sensitivity: "base" });

  function sortKey(cell, numeric) {
    if (!cell) return null;
    if (!numeric) return cell.textContent.trim();
    if (!cell.hasAttribute("data-sort")) return null;
    var v = parseFloat(cell.getAttribute("data-sort"));
    return isNaN(v) ? null : v;
  }

  function sortBy(table, th, col) {
    var tbody = table.tBodies[0];
    var rows = Array.prototype.slice.call(tbody.rows);
    var numeric = rows.some(function (r) {
      return r.cells[col] && r.cells[col].hasAttribute("data-sort");
    });
    var dir = th.getAttribute("aria-sort") === "ascending" ? "descending" : "ascending";
    var sign = dir === "ascending" ? 1 : -1;
    var keyed = rows.map(function (row, index) {
      return { row: row, key: sortKey(row.cells[col], numeric), index: index };
    });
    keyed.sort(function (a, b) {
      if (a.key === null || b.key === null) {
        if (a.key === b.key) return a.index - b.index;
        return a.key === null ? 1 : -1; // missing values last, either way
      }
      var d = numeric ? a.key - b.key : collator.compare(a.key, b.key);
      return d !== 0 ? sign * d : a.index - b.index;
    });
    keyed.forEach(function (k) { tbody.appendChild(k.row); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (h) {
      h.setAttribute("aria-sort", "none");
    });
    th.setAttribute("aria-sort", dir);
  }

  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, col) {
      th.addEventListener("click", function () { sortBy(table, th, col); });
    });
  });

  // ---- charts --------------------------------------------------------------------------
  function fmt(v) {
    if (v === null) return "not finite";
    var a = Math.abs(v);
    if (a !== 0 && (a >= 1e5 || a < 1e-3)) return v.toExponential(3);
    return String(+v.toPrecision(4));
  }

  function setupChart(fig) {
    var spec = JSON.parse(fig.querySelector("script.chart-data").textContent);
    var svg = fig.querySelector("svg.chart");
    var overlay = svg.querySelector(".overlay");
    var hover = svg.querySelector(".hover");
    var hoverLine = hover.querySelector("line");
    var dot = hover.querySelector("circle");
    var tip = fig.querySelector(".tooltip");
    var hidden = {};

    function sx(step) {
      var x = spec.x;
      return x[2] + ((step - x[0]) / (x[1] - x[0])) * (x[3] - x[2]);
    }
    function sy(value) {
      var y = spec.y;
      var t = spec.log ? Math.log10(value) : value;
      return y[2] + ((t - y[0]) / (y[1] - y[0])) * (y[3] - y[2]);
    }

    Array.prototype.forEach.call(fig.querySelectorAll(".legend-item"), function (btn) {
      btn.addEventListener("click", function () {
        var i = btn.getAttribute("data-series");
        var hide = btn.getAttribute("aria-pressed") === "true";
        btn.setAttribute("aria-pressed", hide ? "false" : "true");
        btn.classList.toggle("off", hide);
        var path = svg.querySelector('path.series[data-series="' + i + '"]');
        if (path) path.classList.toggle("hidden", hide);
        hidden[i] = hide;
        hover.setAttribute("visibility", "hidden");
        tip.hidden = true;
      });
    });

    // The point (of a shown line) nearest to the pointer, in pixels.
    function nearest(px, py) {
      var best = null;
      spec.series.forEach(function (s, i) {
        if (hidden[i]) return;
        var pts = s.points;
        var lo = 0, hi = pts.length - 1;
        var target = spec.x[0] + ((px - spec.x[2]) / (spec.x[3] - spec.x[2])) * (spec.x[1] - spec.x[0]);
        while (lo < hi) {
          var mid = (lo + hi) >> 1;
          if (pts[mid][0] < target) lo = mid + 1; else hi = mid;
        }
        for (var k = Math.max(0, lo - 2); k <= Math.min(pts.length - 1, lo + 2); k++) {
          var v = pts[k][1];
          if (v === null || (spec.log && v <= 0)) continue;
          var dx = sx(pts[k][0]) - px, dy = sy(v) - py;
          var d = dx * dx + dy * dy;
          if (best === null || d < best.d) best = { d: d, s: s, step: pts[k][0], value: v };
        }
      });
      return best;
    }

    overlay.addEventListener("mousemove", function (ev) {
      var ctm = svg.getScreenCTM();
      if (!ctm) return;
      var pt = svg.createSVGPoint();
      pt.x = ev.clientX;
      pt.y = ev.clientY;
      var p = pt.matrixTransform(ctm.inverse());
      var best = nearest(p.x, p.y);
      if (best === null) {
        hover.setAttribute("visibility", "hidden");
        tip.hidden = true;
        return;
      }
      var x = sx(best.step), y = sy(best.value);
      hoverLine.setAttribute("x1", x);
      hoverLine.setAttribute("x2", x);
      dot.setAttribute("cx", x);
      dot.setAttribute("cy", y);
      hover.setAttribute("visibility", "visible");
      tip.textContent = "";
      var name = document.createElement("strong");
      name.textContent = best.s.label;
      tip.appendChild(name);
      tip.appendChild(document.createElement("br"));
      tip.appendChild(document.createTextNode("step " + best.step));
      tip.appendChild(document.createElement("br"));
      tip.appendChild(document.createTextNode(spec.ylabel + ": " + fmt(best.value)));
      var box = fig.getBoundingClientRect();
      var left = ev.clientX - box.left + 14;
      if (left > box.width - 220) left = ev.clientX - box.left - 220;
      tip.style.left = Math.max(0, left) + "px";
      tip.style.top = ev.clientY - box.top + 14 + "px";
      tip.hidden = false;
    });
    overlay.addEventListener("mouseleave", function () {
      hover.setAttribute("visibility", "hidden");
      tip.hidden = true;
    });
  }

  Array.prototype.forEach.call(document.querySelectorAll("figure.chart-box"), setupChart);
})();
