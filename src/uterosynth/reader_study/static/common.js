/* Shared helpers: the token lives in the URL fragment or sessionStorage, never in a request URL. */
"use strict";

window.RS = (function () {
  function takeToken(key) {
    const hash = new URLSearchParams(window.location.hash.slice(1));
    const fromHash = hash.get("t");
    if (fromHash) {
      sessionStorage.setItem(key, fromHash);
      history.replaceState(null, "", window.location.pathname + window.location.search);
    }
    return sessionStorage.getItem(key);
  }

  async function api(token, path, options) {
    const opts = Object.assign({ headers: {} }, options || {});
    opts.headers = Object.assign({ Authorization: "Bearer " + token }, opts.headers);
    if (opts.json !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(opts.json);
      delete opts.json;
    }
    opts.cache = "no-store";
    opts.credentials = "omit";
    return fetch(path, opts);
  }

  function show(el, on) { el.hidden = !on; }

  return { takeToken: takeToken, api: api, show: show };
})();
