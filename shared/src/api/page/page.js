(function () {
  "use strict";
  var data = document.body.dataset;
  var $ = function (id) { return document.getElementById(id); };

  // The join form, where the event asks for a puzzle: solve it, then post.
  var form = $("join");
  if (form && +data.puzzle > 0) {
    var offset = +data.now - Date.now(); // the server's clock names the time
    form.addEventListener("submit", function (event) {
      if (form.dataset.solved) return;
      event.preventDefault();
      $("announce").textContent = data.working;
      form.querySelector("button").disabled = true;
      solve(data.event, form.elements.userId.value, +data.puzzle,
        Math.floor((Date.now() + offset) / 1000)).then(function (s) {
        form.elements.puzzleIssuedAt.value = s.issuedAt;
        form.elements.puzzleNonce.value = s.nonce;
        form.dataset.solved = "1";
        form.submit();
      });
    });
  }

  async function solve(event, user, bits, issuedAt) {
    var encoder = new TextEncoder();
    var prefix = "wr-puzzle-v1\n" + event + "\n" + user + "\n" + issuedAt + "\n";
    for (var nonce = 0; ; nonce++) {
      var hash = new Uint8Array(await crypto.subtle.digest("SHA-256", encoder.encode(prefix + nonce)));
      if (zeroBits(hash) >= bits) return { issuedAt: issuedAt, nonce: nonce };
    }
  }

  function zeroBits(hash) {
    for (var i = 0, n = 0; i < hash.length; i++, n += 8) {
      if (hash[i]) return n + Math.clz32(hash[i]) - 24;
    }
    return n;
  }

  // A waiting fan: poll the session as pollAfterSeconds says, with jitter
  // so that a crowd does not poll in step; any change of state reloads the
  // page, which the server words.
  if (data.status !== "WAITING") return;
  var start = +data.start, position = data.position, failures = 0;
  later(+data.poll);

  function later(seconds) {
    setTimeout(poll, seconds * 1000 * (0.75 + Math.random() * 0.5));
  }

  function poll() {
    fetch(data.api, { headers: { accept: "application/json" }, cache: "no-store" })
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
      .then(function (b) {
        failures = 0;
        if (b.status !== "WAITING" || (b.eventState || "") !== data.eventState ||
            !!b.opensAt !== !!data.opensAt || (b.position == null) !== !position) {
          location.replace(data.self + "?start=" + (start || b.peopleAhead || 0));
          return;
        }
        show(b);
        later(b.pollAfterSeconds || 5);
      })
      .catch(function () { failures++; later(Math.min(30, 2 * failures)); });
  }

  function show(b) {
    $("position").textContent = b.position;
    $("ahead").textContent = b.peopleAhead;
    var wait = b.estimatedWaitSeconds;
    $("wait").textContent = wait == null ? data.waitUnknown
      : wait < 60 ? data.underMinute : Math.round(wait / 60) + " " + data.minutes;
    if (!start || b.peopleAhead > start) start = b.peopleAhead;
    $("progress").value = start ? Math.round(100 * (start - b.peopleAhead) / start) : 100;
    if (String(b.position) !== String(position)) {
      position = b.position;
      $("announce").textContent = data.positionLabel + ": " + position;
    }
  }
})();
