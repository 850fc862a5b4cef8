// spruce console: the core (API key, REST calls, DOM helpers, page loop). Plain JS, no build step.
// The pages themselves are in views.js. Every piece of data comes from the REST API with the
// Api-Key header; the key lives in this tab's sessionStorage and never in a URL.
"use strict";

const KEY_ITEM = "spruce.apiKey";

// A "#api_key=..." fragment (never sent to a server) is taken and removed from the address bar
// at once, before anything else runs, so it stays neither on screen nor in the history.
(function takeFragmentKey() {
  const frag = location.hash.slice(1);
  if (!frag.includes("api_key=")) return;
  const params = new URLSearchParams(frag);
  const key = params.get("api_key");
  params.delete("api_key");
  const rest = params.toString();
  history.replaceState(history.state, "", location.pathname + location.search + (rest ? "#" + rest : ""));
  if (key) sessionStorage.setItem(KEY_ITEM, key);
})();

const SC = (window.SC = { views: {} });

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}
SC.ApiError = ApiError;

// The server's own message, verbatim, from either plane's error shape.
function errorMessage(resp, data, text) {
  if (data && typeof data === "object") {
    if (data.error && typeof data.error.message === "string") return data.error.message;
    if (typeof data.message === "string") return data.message;
  }
  return (text && text.length < 500 ? text : "") || `HTTP ${resp.status} ${resp.statusText}`.trim();
}

SC.api = async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  const key = sessionStorage.getItem(KEY_ITEM);
  if (key) headers["Api-Key"] = key;
  const init = { method, headers, cache: "no-store", credentials: "omit" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(path, init);
  } catch (exc) {
    throw new ApiError(0, `Cannot reach the spruce server (${exc.message}). Retrying…`);
  }
  const text = await resp.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch (_) {
    data = null;
  }
  if (resp.status === 401) {
    const said = errorMessage(resp, data, text);
    throw new ApiError(401, key
      ? `The server refused this API key: ${said} Type the right key below.`
      : `This server needs an API key (${said}) Type it below.`);
  }
  if (!resp.ok) throw new ApiError(resp.status, errorMessage(resp, data, text));
  return data;
};

// Every page of a list API (Pinecone's {data, pagination: {next}} shape).
SC.apiAll = async function apiAll(path) {
  const out = [];
  let token = null;
  do {
    const sep = path.includes("?") ? "&" : "?";
    const next = token ? "&paginationToken=" + encodeURIComponent(token) : "";
    const page = await SC.api("GET", path + sep + "limit=100" + next);
    out.push(...((page && page.data) || []));
    token = page && page.pagination ? page.pagination.next : null;
  } while (token);
  return out;
};

// -- DOM helpers ---------------------------------------------------------------------------

// h("td", {class: "x", "data-label": "Kind"}, "text", child, [children]): text is always text.
SC.h = function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === false || value === null || value === undefined) continue;
    if (name === "value" && (tag === "input" || tag === "select")) el.value = value;
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  const add = (c) => {
    if (c === null || c === undefined || c === false) return;
    if (Array.isArray(c)) c.forEach(add);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  };
  children.forEach(add);
  return el;
};

// Bring `old` to look like `fresh` in place, keeping the nodes (and so the keyboard focus and
// open <details>) that stay. Children of an element marked data-keyed are matched by data-key.
SC.morph = function morph(old, fresh) {
  if (old.nodeType !== fresh.nodeType || old.nodeName !== fresh.nodeName) {
    old.replaceWith(fresh);
    return;
  }
  if (old.nodeType !== Node.ELEMENT_NODE) {
    if (old.nodeValue !== fresh.nodeValue) old.nodeValue = fresh.nodeValue;
    return;
  }
  for (const a of [...old.attributes]) {
    if (!fresh.hasAttribute(a.name) && a.name !== "open") old.removeAttribute(a.name);
  }
  for (const a of [...fresh.attributes]) {
    if (a.name !== "open" && old.getAttribute(a.name) !== a.value) old.setAttribute(a.name, a.value);
  }
  if (old.nodeName === "PROGRESS") old.value = fresh.value;
  if (fresh.hasAttribute("data-keyed")) {
    const byKey = new Map([...old.children].map((c) => [c.dataset.key, c]));
    [...fresh.children].forEach((f, i) => {
      let o = byKey.get(f.dataset.key);
      if (o) {
        byKey.delete(f.dataset.key);
        morph(o, f);
        if (o.parentNode !== old) o = f; // replaced whole
      } else o = f;
      if (old.children[i] !== o) old.insertBefore(o, old.children[i] || null);
    });
    for (const o of byKey.values()) o.remove();
    return;
  }
  const oc = [...old.childNodes];
  const fc = [...fresh.childNodes];
  fc.forEach((f, i) => (i < oc.length ? morph(oc[i], f) : old.appendChild(f)));
  for (let i = fc.length; i < oc.length; i++) oc[i].remove();
};

// -- formatting --------------------------------------------------------------------------------

const NUM = new Intl.NumberFormat("en-US");
SC.int = (n) => (n === null || n === undefined ? "—" : NUM.format(n));
SC.bytes = function bytes(n) {
  if (n === null || n === undefined) return "—";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) {
    n /= 1000;
    i++;
  }
  return (i ? n.toFixed(n < 10 ? 2 : 1) : String(n)) + " " + units[i];
};
SC.duration = function duration(seconds) {
  if (!isFinite(seconds) || seconds < 0) return "—";
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
};
// Local time, compact and unambiguous: 2026-12-04 10:02:50.
SC.time = function time(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  if (isNaN(d)) return String(iso);
  const p = (n) => String(n).padStart(2, "0");
  const day = `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}`;
  return `${day} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
};
// The same as an element whose date and time each stay on one line.
SC.timeEl = function timeEl(iso) {
  const [day, clock] = SC.time(iso).split(" ");
  const part = (text) => SC.h("span", { class: "nowrap" }, text);
  return SC.h("span", {}, part(day), clock ? [" ", part(clock)] : null);
};
SC.safeUrl = (u) => (typeof u === "string" && /^https?:\/\//i.test(u) ? u : null);

// -- notices, the key form, the page loop ------------------------------------------------------

const $ = (id) => document.getElementById(id);
SC.notice = function notice(message) {
  $("notice").textContent = message || "";
};

let loopTimer = null;
let loopToken = 0;
let current = null;

function showKeyForm(message) {
  clearTimeout(loopTimer);
  loopToken++;
  $("view").hidden = true;
  $("key-view").hidden = false;
  $("forget-key").hidden = true;
  $("key-error").textContent = message || "";
  SC.notice("");
  $("api-key").focus();
}

// Run the page's refresh now and again every `interval` ms, one call at a time.
async function loop(token) {
  if (token !== loopToken || !current) return;
  try {
    await current.refresh();
    if (token === loopToken) SC.notice("");
  } catch (exc) {
    if (token !== loopToken) return;
    if (exc instanceof ApiError && exc.status === 401) {
      sessionStorage.removeItem(KEY_ITEM);
      showKeyForm(exc.message);
      return;
    }
    SC.notice(exc.message);
  }
  if (token === loopToken && current.interval) loopTimer = setTimeout(() => loop(token), current.interval);
}
SC.refreshNow = function refreshNow() {
  clearTimeout(loopTimer);
  loopToken++;
  loop(loopToken);
};
// A refused key in an action (a button, a form) ends in the key form like a refused poll.
SC.handle = function handle(exc, show) {
  if (exc instanceof ApiError && exc.status === 401) {
    sessionStorage.removeItem(KEY_ITEM);
    showKeyForm(exc.message);
    return;
  }
  (show || SC.notice)(exc.message);
};

function startPage() {
  $("key-view").hidden = true;
  $("view").hidden = false;
  $("forget-key").hidden = !sessionStorage.getItem(KEY_ITEM);
  SC.refreshNow();
}

function pageName() {
  const rest = location.pathname.replace(/^.*?\/console/, "").replace(/\/+$/, "");
  return { "": "indexes", "/jobs": "jobs", "/archives": "archives", "/start": "start" }[rest] || "indexes";
}

document.addEventListener("DOMContentLoaded", () => {
  const name = pageName();
  const view = SC.views[name];
  for (const a of document.querySelectorAll("nav a")) {
    if (a.dataset.page === name) a.setAttribute("aria-current", "page");
  }
  $("page-title").textContent = view.title;
  document.title = `${view.title} · spruce console`;
  const root = $("view");
  root.textContent = "";
  current = view;
  view.setup(root);
  $("key-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const key = $("api-key").value.trim();
    if (!key) {
      $("key-error").textContent = "Type the API key first.";
      return;
    }
    sessionStorage.setItem(KEY_ITEM, key);
    $("api-key").value = "";
    $("key-error").textContent = "";
    startPage();
    $("page-title").setAttribute("tabindex", "-1");
    $("page-title").focus();
  });
  $("forget-key").addEventListener("click", () => {
    sessionStorage.removeItem(KEY_ITEM);
    showKeyForm("");
  });
  startPage();
});
