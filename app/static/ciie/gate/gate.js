/* The offline gate (/gate/offline): verifies badge codes on this device with the published
 * Ed25519 keys (WebCrypto), judges them with the last sync (deactivated and cancelled badges,
 * entry days per badge), keeps the sync and the scan log in IndexedDB and uploads the log
 * when the network is there. The code format is app/badge_tokens.py's. */
(function () {
  'use strict';
  var root = document.getElementById('gate-offline');
  if (!root) { return; }
  var T = JSON.parse(document.getElementById('gate-offline-text').textContent);
  var CACHE = 'ciie-gate-v1';
  var CODE = /^([A-Za-z0-9_-]{24})\.([A-Za-z0-9_-]{86})$/;
  var LEGACY = /^[0-9]{1,10}\.[0-9a-f]{32}\.[A-Za-z0-9_-]{43}$/;
  var SYNC_EVERY = 5 * 60 * 1000;
  var UPLOAD_BATCH = 200;
  var state = null;         // the last sync, as stored
  var publicKeys = {};      // kid -> CryptoKey
  var timings = [];
  var csrf = root.getAttribute('data-csrf');
  var uploading = false;

  function $(id) { return document.getElementById(id); }
  function fill(text, values) {
    return text.replace(/%\((\w+)\)s/g, function (_m, name) { return values[name]; });
  }

  // ---- IndexedDB: 'state' holds the sync, 'queue' the scans not yet uploaded ----------------
  var dbPromise = new Promise(function (resolve, reject) {
    var request = indexedDB.open('ciie-gate', 1);
    request.onupgradeneeded = function () {
      request.result.createObjectStore('state');
      request.result.createObjectStore('queue', {keyPath: 'id'});
    };
    request.onsuccess = function () { resolve(request.result); };
    request.onerror = function () { reject(request.error); };
  });
  function store(name, mode, work) {
    return dbPromise.then(function (db) {
      return new Promise(function (resolve, reject) {
        var tx = db.transaction(name, mode);
        var result = work(tx.objectStore(name));
        tx.oncomplete = function () { resolve(result && 'result' in result ? result.result : undefined); };
        tx.onerror = function () { reject(tx.error); };
      });
    });
  }

  // ---- base64url, exactly as the server spells it ------------------------------------------
  function decode(text) {
    var padded = text.replace(/-/g, '+').replace(/_/g, '/');
    padded += '=='.slice(0, (4 - padded.length % 4) % 4);
    var binary = atob(padded);
    var bytes = new Uint8Array(binary.length);
    for (var i = 0; i < binary.length; i++) { bytes[i] = binary.charCodeAt(i); }
    return encode(bytes) === text ? bytes : null;   // one spelling only (spare bits zero)
  }
  function encode(bytes) {
    var binary = '';
    for (var i = 0; i < bytes.length; i++) { binary += String.fromCharCode(bytes[i]); }
    return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  }
  function hex(bytes) {
    return Array.prototype.map.call(bytes, function (b) { return ('0' + b.toString(16)).slice(-2); }).join('');
  }

  function importKeys(keys) {
    var imported = {};
    return Promise.all(Object.keys(keys).map(function (kid) {
      return crypto.subtle.importKey('raw', decode(keys[kid]), {name: 'Ed25519'}, false, ['verify'])
        .then(function (key) { imported[kid] = key; });
    })).then(function () { publicKeys = imported; });
  }

  // ---- days, in Beijing time -----------------------------------------------------------------
  function todayInBeijing() {
    return new Intl.DateTimeFormat('en-CA', {timeZone: 'Asia/Shanghai', year: 'numeric',
                                             month: '2-digit', day: '2-digit'}).format(new Date());
  }
  function dayIndex(day) {
    return Math.round((Date.parse(day + 'T00:00:00Z') - Date.parse(state.edition.start + 'T00:00:00Z')) / 86400000);
  }
  function maskDays(mask) {
    var days = [];
    for (var i = 0; i < 32; i++) {
      if ((mask >>> i) & 1) {
        var d = new Date(Date.parse(state.edition.start + 'T00:00:00Z') + i * 86400000);
        days.push(d.toISOString().slice(5, 10));
      }
    }
    return days;
  }

  // ---- the verdict -----------------------------------------------------------------------------
  function judge(code) {
    var match = CODE.exec(code);
    if (!match) {
      return Promise.resolve({result: LEGACY.test(code) ? 'legacy' : 'forged'});
    }
    var payload = decode(match[1]);
    var signature = decode(match[2]);
    if (!payload || !signature || payload.length !== 18) { return Promise.resolve({result: 'forged'}); }
    var view = new DataView(payload.buffer);
    var claim = {version: view.getUint8(0), kid: hex(payload.subarray(1, 5)),
                 badge: view.getUint32(5), edition: view.getUint8(9), mask: view.getUint32(10),
                 tag: hex(payload.subarray(14, 18))};
    var key = publicKeys[claim.kid];
    if (claim.version !== 1 || !key) { return Promise.resolve({result: 'forged'}); }
    return crypto.subtle.verify({name: 'Ed25519'}, key, signature, payload).then(function (genuine) {
      if (!genuine) { return {result: 'forged'}; }
      var known = state.badges[claim.badge];   // [nonce tag, entry-day mask, badge number]
      var verdict = {badge: claim.badge, number: known ? known[2] : null};
      if (known && known[0] !== claim.tag) {
        verdict.result = 'unknown';            // an earlier code of a card printed anew
      } else if (state.deactivated.indexOf(claim.badge) >= 0) {
        verdict.result = 'deactivated';
      } else if (state.cancelled.indexOf(claim.badge) >= 0) {
        verdict.result = 'cancelled';
      } else if (!known && claim.edition !== state.edition.number) {
        verdict.result = 'unknown';            // not a badge of this expo
      } else {
        // The last sync knows best; a badge made since then is judged by its code.
        var mask = known ? known[1] : claim.mask;
        var index = dayIndex(todayInBeijing());
        verdict.days = maskDays(mask);
        verdict.result = index >= 0 && index < 32 && ((mask >>> index) & 1) ? 'valid' : 'not_today';
      }
      return verdict;
    });
  }

  function show(verdict, ms) {
    var box = $('gate-result');
    var text = verdict.result === 'legacy' ? T.legacy : T.verdicts[verdict.result];
    var tone = verdict.result === 'valid' ? 'success'
      : (verdict.result === 'not_today' || verdict.result === 'legacy' ? 'warning' : 'danger');
    box.className = 'alert ciie-gate-result alert-' + tone;
    box.setAttribute('data-result', verdict.result);
    $('gate-icon').className = 'fa ' + (verdict.result === 'valid' ? 'fa-check-circle' : 'fa-times-circle');
    $('gate-label').textContent = text.label;
    $('gate-message').textContent = text.message;
    var about = [];
    if (verdict.badge) {
      about.push(verdict.number ? T.badge + ': ' + verdict.number : T.badge_id + ': ' + verdict.badge);
    }
    if (verdict.days) { about.push(T.entry_dates + ': ' + verdict.days.join(' ') + ' (' + T.today + ' ' + todayInBeijing().slice(5) + ')'); }
    $('gate-badge').textContent = about.join(' · ');
    $('verify-time').textContent = fill(T.checked_in, {ms: ms.toFixed(2)});
    box.setAttribute('data-ms', ms.toFixed(3));
    box.setAttribute('data-scans', timings.length + 1);
  }

  function recordTiming(ms) {
    timings.push(ms);
    var sorted = timings.slice().sort(function (a, b) { return a - b; });
    $('verify-stats').textContent = fill(T.stats, {
      last: ms.toFixed(2), median: sorted[Math.floor((sorted.length - 1) / 2)].toFixed(2),
      max: sorted[sorted.length - 1].toFixed(2), count: timings.length});
  }

  function check(event) {
    event.preventDefault();
    var input = $('token');
    var code = input.value.trim();
    if (!code) { return; }
    if (!state) { $('sync-error').textContent = T.not_synced; return; }
    var started = performance.now();
    judge(code).then(function (verdict) {
      var ms = performance.now() - started;
      show(verdict, ms);
      recordTiming(ms);
      input.value = '';
      input.focus();
      if (verdict.result === 'legacy') { return null; }   // the online page logs those
      return store('queue', 'readwrite', function (queue) {
        queue.put({id: crypto.randomUUID(), token: code.slice(0, 500), result: verdict.result,
                   scanned_at: new Date().toISOString(), gate: $('gate').value.slice(0, 50) || null});
      }).then(showQueue).then(upload);
    });
  }

  // ---- sync and upload -----------------------------------------------------------------------
  function showState() {
    $('last-sync').textContent = state ? new Date(state.synced_at).toLocaleString() : T.never;
    $('badge-count').textContent = state ? Object.keys(state.badges).length : 0;
    $('deactivated-count').textContent = state ? state.deactivated.length : 0;
  }
  function showQueue() {
    return store('queue', 'readonly', function (queue) { return queue.count(); }).then(function (n) {
      $('queue-count').textContent = n;
      return n;
    });
  }
  function showNetwork() {
    var online = navigator.onLine;
    var label = $('net-status');
    label.textContent = online ? T.online : T.offline;
    label.className = 'label ' + (online ? 'label-success' : 'label-warning');
    label.setAttribute('data-online', online ? 'yes' : 'no');
  }

  function sync() {
    var url = root.getAttribute('data-sync-url');
    var fresh = !state;
    if (state) { url += '?since=' + encodeURIComponent(state.next_since); }
    return fetch(url, {credentials: 'same-origin', headers: {Accept: 'application/json'}})
      .then(function (response) {
        if (response.status === 401) { throw new Error(T.log_in); }
        if (!response.ok) { throw new Error(T.sync_failed); }
        return response.json();
      })
      .then(function (answer) {
        csrf = answer.csrf_token;
        if (!fresh && !answer.full && state.edition.number !== answer.edition.number) {
          state = null;       // a new expo: its badges were issued before our cursor
          return sync();
        }
        var badges = fresh || answer.full ? {} : state.badges;
        answer.badges.forEach(function (row) { badges[row[0]] = [row[1], row[2], row[3]]; });
        var next = {edition: answer.edition, keys: answer.keys, deactivated: answer.deactivated,
                    cancelled: answer.cancelled, badges: badges, synced_at: answer.synced_at,
                    next_since: answer.next_since};
        return importKeys(next.keys).then(function () {
          state = next;
          root.setAttribute('data-synced-at', next.synced_at);
          $('sync-error').textContent = '';
          showState();
          return store('state', 'readwrite', function (s) { s.put(next, 'sync'); });
        });
      })
      .catch(function (error) {
        $('sync-error').textContent = error.message === T.log_in ? T.log_in : T.sync_failed;
      });
  }

  function upload() {
    if (uploading || !navigator.onLine) { return Promise.resolve(); }
    uploading = true;
    return store('queue', 'readonly', function (queue) { return queue.getAll(null, UPLOAD_BATCH); })
      .then(function (scans) {
        if (!scans.length) { return null; }
        return fetch(root.getAttribute('data-upload-url'), {
          method: 'POST', credentials: 'same-origin',
          headers: {'Content-Type': 'application/json', 'X-CSRFToken': csrf},
          body: JSON.stringify({scans: scans})
        }).then(function (response) {
          // Refused: most likely a CSRF token gone stale; the sync brings a fresh one, and the
          // scans stay queued for the next upload.
          if (!response.ok) { return sync(); }
          return store('queue', 'readwrite', function (queue) {
            scans.forEach(function (scan) { queue.delete(scan.id); });
          }).then(function () { root.setAttribute('data-uploaded', scans.length); });
        });
      })
      .catch(function () { return null; })
      .then(function () { uploading = false; return showQueue(); });
  }

  // ---- the page kept for offline use ------------------------------------------------------------
  function keepForOffline() {
    if (!('serviceWorker' in navigator)) { return; }
    navigator.serviceWorker.register(root.getAttribute('data-sw-url'),
                                     {scope: root.getAttribute('data-scope')});
    var urls = [location.pathname];
    document.querySelectorAll('script[src], link[rel=stylesheet], link[rel=manifest]').forEach(function (el) {
      urls.push(el.getAttribute('src') || el.getAttribute('href'));
    });
    if (navigator.onLine) {
      caches.open(CACHE).then(function (cache) { return cache.addAll(urls); }).catch(function () { return null; });
    }
  }

  $('gate').value = localStorage.getItem('ciie-gate-place') || '';
  $('gate').addEventListener('input', function () {
    localStorage.setItem('ciie-gate-place', $('gate').value);
  });
  $('offline-form').addEventListener('submit', check);
  $('sync-now').addEventListener('click', function () { sync().then(upload); });
  window.addEventListener('online', function () { showNetwork(); sync().then(upload); });
  window.addEventListener('offline', showNetwork);
  showNetwork();
  keepForOffline();
  store('state', 'readonly', function (s) { return s.get('sync'); })
    .then(function (saved) {
      if (!saved) { return null; }
      return importKeys(saved.keys).then(function () { state = saved; });
    })
    .then(function () {
      showState();
      showQueue();
      root.setAttribute('data-ready', 'yes');
      if (navigator.onLine) { return sync().then(upload); }
      return null;
    });
  setInterval(function () { if (navigator.onLine) { sync().then(upload); } }, SYNC_EVERY);
}());
