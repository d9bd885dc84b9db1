/* The offline gate's service worker (served as /gate/sw.js, scope /gate/): the page and its
 * files come from the network when there is one (and are kept), else from what was kept.
 * The gate's data (sync, scan queue) lives in IndexedDB, written by the page itself. */
'use strict';
var CACHE = 'ciie-gate-v1';

self.addEventListener('install', function () { self.skipWaiting(); });
self.addEventListener('activate', function (event) {
  event.waitUntil(caches.keys().then(function (names) {
    return Promise.all(names.filter(function (name) { return name !== CACHE; })
      .map(function (name) { return caches.delete(name); }));
  }).then(function () { return self.clients.claim(); }));
});

self.addEventListener('fetch', function (event) {
  var request = event.request;
  var url = new URL(request.url);
  // Only what the page is made of: the sync and the uploads are the page's own business.
  if (request.method !== 'GET' || url.origin !== self.location.origin ||
      url.pathname === '/gate/sync') {
    return;
  }
  event.respondWith(fetch(request).then(function (response) {
    if (response.ok && !response.redirected) {
      var copy = response.clone();
      caches.open(CACHE).then(function (cache) { return cache.put(request, copy); });
    }
    return response;
  }).catch(function () {
    return caches.match(request, {ignoreSearch: url.pathname !== '/gate/offline'})
      .then(function (kept) { return kept || Response.error(); });
  }));
});
