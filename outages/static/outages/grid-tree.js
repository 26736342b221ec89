/* The outage form's grid tree (outages/admin/tree.py): a filter box, the running total of what
   is ticked, and a ticked area's or feeder's nodes shown as covered (ticked and locked: the
   parent already posts them). Without this script the tree still works: its checkboxes post
   the form's fields, and the page counts what was ticked when it comes back. */
"use strict";
(function () {
  var plural = window.ngettext || function (one, many, n) { return n === 1 ? one : many; };
  var say = window.gettext || function (text) { return text; };

  function counts(accounts, meters) {
    return plural("%s account", "%s accounts", accounts).replace("%s", accounts) + " · " +
      plural("%s meter", "%s meters", meters).replace("%s", meters);
  }

  function setup(tree) {
    var filter = tree.querySelector(".grid-tree-filter");
    var total = tree.querySelector(".grid-tree-total");
    var boxes = Array.prototype.slice.call(tree.querySelectorAll("input[type=checkbox]"));

    function ancestors(box) {
      var found = [];
      var li = box.closest("li").parentElement.closest("li");
      while (li && tree.contains(li)) {
        var own = li.querySelector(":scope > details > summary input[type=checkbox]");
        if (own) found.push(own);
        li = li.parentElement.closest("li");
      }
      return found;
    }

    function refresh() {
      var accounts = 0, meters = 0, ticked = 0;
      boxes.forEach(function (box) {
        var covered = ancestors(box).some(function (up) { return up.dataset.own === "1"; });
        box.disabled = covered;
        box.classList.toggle("grid-covered", covered);
        box.checked = covered || box.dataset.own === "1";
        if (box.checked && !covered) {
          accounts += Number(box.dataset.accounts);
          meters += Number(box.dataset.meters);
          ticked += 1;
        }
      });
      total.textContent = ticked
        ? say("Ticked:") + " " + counts(accounts, meters)
        : say("Nothing ticked yet.");
    }

    boxes.forEach(function (box) {
      box.addEventListener("change", function () {
        box.dataset.own = box.checked ? "1" : "";
        refresh();
      });
    });

    filter.addEventListener("input", function () {
      var words = filter.value.trim().toLowerCase();
      var items = Array.prototype.slice.call(tree.querySelectorAll("li[data-search]"));
      items.forEach(function (li) { li.hidden = false; });
      if (!words) return;
      // Deepest first: a node stays when it or a node under it matches, and its branch opens.
      items.reverse().forEach(function (li) {
        var inner = li.querySelector("ul li[data-search]:not([hidden])");
        li.hidden = li.dataset.search.indexOf(words) === -1 && !inner;
        var details = li.querySelector(":scope > details");
        if (inner && details) details.open = true;
      });
    });
    filter.addEventListener("keydown", function (event) {
      if (event.key === "Enter") event.preventDefault(); // filtering never submits the form
    });

    // When the form names a utility, only its grid is offered.
    var utility = document.getElementById("id_utility");
    var sections = tree.querySelectorAll("[data-utility]");
    function showUtility() {
      sections.forEach(function (section) {
        section.hidden = Boolean(utility.value) && section.dataset.utility !== utility.value;
      });
    }
    if (utility && sections.length > 1) {
      utility.addEventListener("change", showUtility);
      showUtility();
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll(".grid-tree").forEach(setup);
  });
})();
