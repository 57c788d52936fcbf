(function () {
  "use strict";
  var figs = JSON.parse(document.getElementById("dg-figures").textContent);
  var config = { displaylogo: false, responsive: true, showLink: false, showSendToCloud: false,
                 displayModeBar: false };
  Object.keys(figs).forEach(function (id) {
    var el = document.getElementById(id);
    if (el && window.Plotly) { Plotly.newPlot(el, figs[id].data, figs[id].layout, config); }
  });
  var input = document.getElementById("acct-filter");
  var onlyFlagged = document.getElementById("acct-flagged");
  var rows = Array.prototype.slice.call(document.querySelectorAll("#accounts-table tbody tr"));
  var counter = document.getElementById("acct-count");
  var text = rows.map(function (r) { return r.textContent.toLowerCase(); });
  function apply() {
    var q = input.value.trim().toLowerCase(), shown = 0;
    rows.forEach(function (r, i) {
      var ok = (!q || text[i].indexOf(q) >= 0) && (!onlyFlagged.checked || r.dataset.flagged === "1");
      r.style.display = ok ? "" : "none";
      if (ok) { shown += 1; }
    });
    counter.textContent = shown + " of " + rows.length + " accounts shown";
  }
  input.addEventListener("input", apply);
  onlyFlagged.addEventListener("change", apply);
  apply();
})();
