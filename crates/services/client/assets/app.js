// Progressive enhancement only: every page works without this file.
(function () {
  "use strict";
  // Times in the user's locale and time zone, with the zone named: "Sat, Nov 28, 2026,
  // 7:12 PM GMT+1". Without this script the page shows the same moment in UTC.
  var timeFormat = null;
  try {
    timeFormat = new Intl.DateTimeFormat(undefined, {
      weekday: "short", year: "numeric", month: "short", day: "numeric",
      hour: "numeric", minute: "2-digit", timeZoneName: "short"
    });
  } catch (e) { timeFormat = null; }
  document.querySelectorAll("time[data-local]").forEach(function (el) {
    var at = new Date(el.getAttribute("datetime"));
    if (isNaN(at)) return;
    el.textContent = timeFormat ? timeFormat.format(at) : at.toLocaleString();
  });
  // Event starts: the form shows and reads UTC without this script. With it, a start from
  // the API (data-utc) is shown in the browser's time zone, and on submit the browser's
  // offset from UTC at the entered date and time goes with it (minutes east of UTC).
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  document.querySelectorAll("input[data-utc]").forEach(function (input) {
    var at = new Date(input.getAttribute("data-utc") + ":00Z");
    if (isNaN(at)) return;
    input.value = at.getFullYear() + "-" + pad(at.getMonth() + 1) + "-" + pad(at.getDate()) +
      "T" + pad(at.getHours()) + ":" + pad(at.getMinutes());
  });
  document.querySelectorAll("input[data-tz-offset-for]").forEach(function (hidden) {
    var field = document.getElementById(hidden.getAttribute("data-tz-offset-for"));
    if (!field || !hidden.form) return;
    hidden.form.addEventListener("submit", function () {
      var local = new Date(field.value);
      hidden.value = isNaN(local) ? "" : String(-local.getTimezoneOffset());
    });
  });
  document.querySelectorAll("[data-time-zone-note]").forEach(function (note) {
    var zone = "";
    try { zone = Intl.DateTimeFormat().resolvedOptions().timeZone || ""; } catch (e) { zone = ""; }
    note.textContent = "Times are in your time zone" + (zone ? " (" + zone + ")." : ".");
  });
  // A file over the limit is refused before it is sent (the server says so too).
  document.querySelectorAll("input[type=file][data-max-bytes]").forEach(function (input) {
    input.addEventListener("change", function () {
      var max = Number(input.getAttribute("data-max-bytes"));
      var old = input.parentNode.querySelector("[data-size-error]");
      if (old) old.remove();
      if (input.files.length && input.files[0].size > max) {
        input.value = "";
        var error = document.createElement("p");
        error.className = "field-error";
        error.setAttribute("data-size-error", "");
        error.setAttribute("role", "alert");
        error.textContent = "The file must be at most 5 MB";
        input.parentNode.appendChild(error);
      }
    });
  });
  // Live countdown to the end of a reservation ("12:34 left"). The server renders the seconds
  // left by its own clock (data-seconds-left); they are counted down on the browser's
  // monotonic clock (performance.now) from the moment the page's response arrived, so a device
  // clock that is off changes nothing. At 2 minutes the line turns urgent and its warning
  // (data-warn-id, a live region) is shown once; at 0 the page reloads to show the order as it
  // now stands (the server then renders it expired, or the seconds still left).
  var URGENT_SECONDS = 120;
  var arrived = performance.now();
  try {
    var navigation = performance.getEntriesByType("navigation")[0];
    if (navigation && navigation.responseStart > 0) arrived = navigation.responseStart;
  } catch (e) { /* counted from this script's start */ }
  document.querySelectorAll("[data-seconds-left]").forEach(function (el) {
    var seconds = el.getAttribute("data-seconds-left");
    if (!/^[0-9]+$/.test(seconds)) return;
    var end = arrived + Number(seconds) * 1000;
    var line = el.closest(".countdown, .note");
    var warning = document.getElementById(el.getAttribute("data-warn-id") || "");
    var warned = false;
    function tick() {
      var left = Math.max(0, Math.ceil((end - performance.now()) / 1000));
      var m = Math.floor(left / 60), s = left % 60;
      el.textContent = m + ":" + (s < 10 ? "0" : "") + s + " left";
      if (left <= URGENT_SECONDS && !warned) {
        warned = true;
        if (line) line.classList.add("urgent");
        if (warning) warning.textContent = warning.getAttribute("data-text");
      }
      if (left === 0) {
        clearInterval(timer);
        el.textContent = "time is up";
        setTimeout(function () { window.location.reload(); }, 1500);
      }
    }
    var timer = setInterval(tick, 1000);
    tick();
  });
  // Stripe card entry, when a publishable key is configured.
  var cardEl = document.getElementById("card-element");
  if (cardEl && window.Stripe) {
    var stripe = window.Stripe(cardEl.getAttribute("data-stripe-key"));
    var card = stripe.elements().create("card");
    card.mount(cardEl);
    var form = document.getElementById("pay-form");
    form.addEventListener("submit", function (event) {
      if (document.getElementById("stripe-token").value) return;
      event.preventDefault();
      stripe.createToken(card).then(function (result) {
        if (result.error) {
          document.getElementById("card-errors").textContent = result.error.message;
        } else {
          document.getElementById("stripe-token").value = result.token.id;
          form.submit();
        }
      });
    });
  }
})();
