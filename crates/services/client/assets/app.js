// Progressive enhancement only: every page works without this file.
(function () {
  "use strict";
  // Times in the user's locale.
  document.querySelectorAll("time[data-local]").forEach(function (el) {
    var at = new Date(el.getAttribute("datetime"));
    if (!isNaN(at)) el.textContent = at.toLocaleString();
  });
  // Live countdown to the end of a reservation; reloads the page when it is over.
  document.querySelectorAll("[data-countdown]").forEach(function (el) {
    var end = new Date(el.getAttribute("data-countdown")).getTime();
    if (isNaN(end)) return;
    function tick() {
      var left = Math.max(0, Math.round((end - Date.now()) / 1000));
      var m = Math.floor(left / 60), s = left % 60;
      el.textContent = m + ":" + (s < 10 ? "0" : "") + s;
      if (left === 0) {
        clearInterval(timer);
        el.textContent = "0:00";
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
