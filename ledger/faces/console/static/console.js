// Times are written in UTC; show each in the viewer's own zone, keeping UTC in its title (shown on hover).
"use strict";
function localiseTimes(root) {
  const format = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", timeZoneName: "short",
  });
  root.querySelectorAll("time[datetime]").forEach(function (element) {
    const moment = new Date(element.getAttribute("datetime"));
    if (!isNaN(moment)) { element.textContent = format.format(moment); }
  });
}
document.addEventListener("DOMContentLoaded", function () { localiseTimes(document); });
document.addEventListener("htmx:afterSwap", function (event) { localiseTimes(event.target); });
