// The join puzzle's solver (docs/api.md, "The join puzzle"): SHA-256 in
// plain JavaScript, many times faster than one crypto.subtle call per
// hash. A global, so that the browser test can time this very code.
var wrPuzzle = (function () {
  "use strict";
  var K = new Int32Array([
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2]);
  var w = new Int32Array(64);
  var rotr = function (x, n) { return (x >>> n) | (x << (32 - n)); };

  // SHA-256 of an ASCII string, as eight 32-bit words.
  function sha256(text) {
    var n = text.length, words = new Int32Array(((n + 8) >> 6) * 16 + 16);
    for (var i = 0; i < n; i++) words[i >> 2] |= (text.charCodeAt(i) & 0xff) << (24 - (i & 3) * 8);
    words[n >> 2] |= 0x80 << (24 - (n & 3) * 8);
    words[words.length - 1] = n * 8;
    var h = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];
    for (var j = 0; j < words.length; j += 16) {
      var a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
      for (var t = 0; t < 64; t++) {
        if (t < 16) {
          w[t] = words[j + t];
        } else {
          var x = w[t - 15], y = w[t - 2];
          w[t] = (rotr(x, 7) ^ rotr(x, 18) ^ (x >>> 3)) + w[t - 7] +
            (rotr(y, 17) ^ rotr(y, 19) ^ (y >>> 10)) + w[t - 16] | 0;
        }
        var t1 = k + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K[t] + w[t] | 0;
        var t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c)) | 0;
        k = g; g = f; f = e; e = d + t1 | 0; d = c; c = b; b = a; a = t1 + t2 | 0;
      }
      h[0] = h[0] + a | 0; h[1] = h[1] + b | 0; h[2] = h[2] + c | 0; h[3] = h[3] + d | 0;
      h[4] = h[4] + e | 0; h[5] = h[5] + f | 0; h[6] = h[6] + g | 0; h[7] = h[7] + k | 0;
    }
    return h;
  }

  function zeroBits(h) {
    for (var i = 0, n = 0; i < 8; i++, n += 32) {
      if (h[i]) return n + Math.clz32(h[i]);
    }
    return n;
  }

  // Calls done({issuedAt, nonce}) once solved, in slices that leave the
  // page responsive; starts over with a fresh time before a solution
  // could go stale (five minutes).
  function solve(event, user, bits, now, done) {
    var issuedAt = now(), started = Date.now(), nonce = 0;
    var prefix = "wr-puzzle-v1\n" + event + "\n" + user + "\n" + issuedAt + "\n";
    (function slice() {
      for (var end = nonce + 20000; nonce < end; nonce++) {
        if (zeroBits(sha256(prefix + nonce)) >= bits) return done({ issuedAt: issuedAt, nonce: nonce });
      }
      if (Date.now() - started > 240000) return solve(event, user, bits, now, done);
      setTimeout(slice, 0);
    })();
  }

  return { sha256: sha256, zeroBits: zeroBits, solve: solve };
})();

(function () {
  "use strict";
  var data = document.body.dataset;
  var $ = function (id) { return document.getElementById(id); };

  // The join form, where the event asks for a puzzle: solve it, then post.
  var form = $("join");
  if (form && +data.puzzle > 0) {
    var offset = +data.now - Date.now(); // the server's clock names the time
    var button = form.querySelector("button"), label = button.textContent;
    form.addEventListener("submit", function (event) {
      if (form.dataset.solved) return;
      event.preventDefault();
      button.disabled = true;
      button.textContent = data.working;
      $("announce").textContent = data.working;
      try {
        wrPuzzle.solve(data.event, form.elements.userId.value, +data.puzzle, function () {
          return Math.floor((Date.now() + offset) / 1000);
        }, function (s) {
          form.elements.puzzleIssuedAt.value = s.issuedAt;
          form.elements.puzzleNonce.value = s.nonce;
          form.dataset.solved = "1";
          form.submit();
        });
      } catch (failure) {
        button.disabled = false;
        button.textContent = label;
        $("announce").textContent = data.failed;
      }
    });
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

  function again() {
    location.replace(data.self + (start ? "?start=" + start : ""));
  }

  function poll() {
    fetch(data.api, { headers: { accept: "application/json" }, cache: "no-store" })
      .then(function (r) {
        if (r.status === 404) return again(); // gone: the server says so
        if (!r.ok) throw new Error(r.status);
        return r.json().then(function (b) {
          failures = 0;
          if (b.status !== "WAITING" || (b.eventState || "") !== data.eventState ||
              !!b.opensAt !== !!data.opensAt || (b.position == null) !== !position) {
            if (!start && b.peopleAhead != null) start = b.peopleAhead;
            return again();
          }
          show(b);
          later(b.pollAfterSeconds || 5);
        });
      })
      .catch(function () { failures++; later(Math.min(30, 2 * failures)); });
  }

  function show(b) {
    if (b.position == null) return; // not numbered yet: nothing to show
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
