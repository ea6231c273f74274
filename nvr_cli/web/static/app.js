// The review page: hand-written, no build step, talks only to /api/ (docs/web-api.md).
// One page, routed with the History API: every view has the URL of docs/web-api.md "Pages".
"use strict";

const view = document.getElementById("view");
const who = document.getElementById("who");
const LABELS = ["person", "car", "qr", "motion"];
const PAGE_SIZE = 24;
const CONTIGUOUS = 1.0; // seconds: a hole longer than this between two segments is a gap

// ---------------------------------------------------------------------------------------------
// Small helpers: elements, formatting, the API

function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v == null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "style") el.style.cssText = v;
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, v);
  }
  for (const c of children.flat(Infinity)) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

const p2 = (n) => String(n).padStart(2, "0");
const enc = encodeURIComponent;

// A query string that stays readable in the address bar (times keep their colons).
function qs(params) {
  return Object.entries(params)
    .filter(([, v]) => v != null && v !== "")
    .map(([k, v]) => `${enc(k)}=${enc(v).replace(/%3A/g, ":")}`)
    .join("&");
}

function fmtTime(ts) {
  return new Date(ts * 1000).toLocaleTimeString([], {
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
    hourCycle: "h23",
  });
}

function fmtHm(ts) {
  return new Date(ts * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
}

function fmtDate(ts) {
  return new Date(ts * 1000).toLocaleDateString([], { weekday: "short", day: "numeric", month: "short" });
}

function dayDate(day) {
  const [y, m, d] = day.split("-").map(Number);
  return new Date(y, m - 1, d);
}

function fmtDay(day, long = false) {
  const opts = long
    ? { weekday: "long", day: "numeric", month: "long", year: "numeric" }
    : { weekday: "short", day: "numeric", month: "short" };
  return dayDate(day).toLocaleDateString([], opts);
}

function localDay(date = new Date()) {
  return `${date.getFullYear()}-${p2(date.getMonth() + 1)}-${p2(date.getDate())}`;
}

function fmtDuration(s) {
  if (s == null || Number.isNaN(s)) return "";
  if (s < 60) return `${s < 10 ? s.toFixed(1) : Math.round(s)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${p2(Math.round(s % 60))} s`;
  return `${Math.floor(s / 3600)} h ${p2(Math.round((s % 3600) / 60))} min`;
}

const fmtScore = (x) => (x == null ? "" : `${Math.round(x * 100)}%`);

function fmtBytes(n) {
  if (n == null) return "";
  const units = ["B", "kB", "MB", "GB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) {
    n /= 1000;
    i += 1;
  }
  return `${n < 10 && i ? n.toFixed(1) : Math.round(n)} ${units[i]}`;
}

// Wall-clock HH:MM:SS (browser local) of a moment: the `t` of a timeline URL.
function clock(ts) {
  const d = new Date(ts * 1000);
  return `${p2(d.getHours())}:${p2(d.getMinutes())}:${p2(d.getSeconds())}`;
}

// ISO 8601 with the browser's offset, to the second: what export URLs and requests carry.
function isoLocal(ts) {
  const d = new Date(Math.round(ts) * 1000);
  const off = -d.getTimezoneOffset();
  const a = Math.abs(off);
  return (
    `${d.getFullYear()}-${p2(d.getMonth() + 1)}-${p2(d.getDate())}T` +
    `${p2(d.getHours())}:${p2(d.getMinutes())}:${p2(d.getSeconds())}` +
    `${off >= 0 ? "+" : "-"}${p2(Math.floor(a / 60))}:${p2(a % 60)}`
  );
}

// A datetime-local input's value for a moment, and back.
function inputValue(ts) {
  if (ts == null || Number.isNaN(ts)) return "";
  return isoLocal(ts).slice(0, 19);
}

function parseTime(s) {
  if (s == null || s === "") return null;
  if (/^\d+(\.\d+)?$/.test(s)) return Number(s);
  const ms = Date.parse(s);
  return Number.isNaN(ms) ? null : ms / 1000;
}

class ApiError extends Error {
  constructor(message, status, retryAfter) {
    super(message);
    this.status = status;
    this.retryAfter = retryAfter;
  }
}

async function api(path, { method = "GET", body, signal } = {}) {
  const opts = { method, credentials: "same-origin", signal, headers: { Accept: "application/json" } };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const r = await fetch(path, opts);
  let data = null;
  try {
    data = await r.json();
  } catch (e) {
    data = null;
  }
  if (r.status === 401 && path !== "/api/login") {
    needLogin();
    throw new ApiError("Please log in.", 401);
  }
  if (!r.ok) {
    throw new ApiError((data && data.error) || `${r.status} ${r.statusText}`, r.status, r.headers.get("Retry-After"));
  }
  return data;
}

function thumb(src, alt) {
  if (!src) return h("div", { class: "thumb none", role: "img", "aria-label": alt }, "No picture");
  return h("img", { class: "thumb", src, alt, loading: "lazy", decoding: "async", width: 320, height: 180 });
}

function chip(label) {
  return h("span", { class: `chip label-${label}` }, label);
}

function eventLabels(ev) {
  const labels = [...(ev.labels || [])];
  if (ev.qr && ev.qr.length && !labels.includes("qr")) labels.push("qr");
  return labels.length ? labels : ["motion"];
}

let toastTimer = null;
function toast(text) {
  let el = document.getElementById("toast");
  if (!el) {
    el = h("div", { id: "toast", class: "toast", role: "status", "aria-live": "polite" });
    document.body.append(el);
  }
  el.textContent = text;
  el.classList.add("show");
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => el.classList.remove("show"), 3500);
}

function errorBox(e) {
  return h("div", { class: "notice error", role: "alert" }, e.message || String(e));
}

// ---------------------------------------------------------------------------------------------
// Session (login) and routing

const session = { user: null, loginRequired: false };

async function loadMe() {
  const me = await api("/api/me");
  session.user = me.user;
  session.loginRequired = !!me.login_required;
  renderWho();
}

function renderWho() {
  document.body.classList.toggle("logged-out", session.loginRequired && !session.user);
  if (!session.user) {
    who.replaceChildren();
    return;
  }
  who.replaceChildren(
    h("span", { class: "user" }, session.user),
    h(
      "button",
      {
        type: "button",
        class: "small",
        onclick: async () => {
          try {
            await api("/api/logout", { method: "POST", body: {} });
          } catch (e) {
            // the session is over either way
          }
          session.user = null;
          renderWho();
          go("/login", { replace: true });
        },
      },
      "Log out",
    ),
  );
}

function needLogin() {
  session.user = null;
  session.loginRequired = true;
  renderWho();
  if (location.pathname !== "/login") {
    go(`/login?next=${enc(location.pathname + location.search)}`, { replace: true });
  }
}

const routes = [
  [/^\/$/, viewCameras, "cameras"],
  [/^\/live\/?$/, viewLive, "live"],
  [/^\/live\/([^/]+)\/?$/, viewLiveOne, "live"],
  [/^\/events\/?$/, viewEvents, "events"],
  [/^\/events\/([^/]+)$/, viewEvent, "events"],
  [/^\/calendar\/?$/, viewCalendar, "calendar"],
  [/^\/timeline\/([^/]+)\/(\d{4}-\d{2}-\d{2})\/?$/, viewTimeline, "cameras"],
  [/^\/export\/?$/, viewExport, "export"],
  [/^\/login\/?$/, viewLogin, ""],
];

let current = null;

function go(url, { replace = false } = {}) {
  history[replace ? "replaceState" : "pushState"](null, "", url);
  render(!replace);
}

async function render(focus = false) {
  if (current) {
    current.ctrl.abort();
    for (const f of current.cleanups.splice(0)) {
      try {
        f();
      } catch (e) {
        // a view's clean-up must not stop the next view
      }
    }
  }
  const url = new URL(location.href);
  const ctx = {
    ctrl: new AbortController(),
    cleanups: [],
    get signal() {
      return this.ctrl.signal;
    },
    get alive() {
      return current === this;
    },
    onCleanup(f) {
      this.cleanups.push(f);
    },
    // A listener that goes away with the view.
    listen(target, type, f, opts) {
      target.addEventListener(type, f, opts);
      this.cleanups.push(() => target.removeEventListener(type, f, opts));
    },
  };
  current = ctx;
  let route = null;
  let match = null;
  for (const r of routes) {
    match = url.pathname.match(r[0]);
    if (match) {
      route = r;
      break;
    }
  }
  for (const a of document.querySelectorAll("nav a[data-nav]")) {
    if (route && a.dataset.nav === route[2]) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  if (session.loginRequired && !session.user && url.pathname !== "/login") {
    needLogin();
    return;
  }
  view.replaceChildren(h("p", { class: "loading" }, "Loading…"));
  if (focus) view.focus({ preventScroll: true });
  if (!route) {
    document.title = "Not found · nvr-cli";
    view.replaceChildren(h("h1", {}, "Not found"), h("p", {}, h("a", { href: "/" }, "Back to the cameras")));
    return;
  }
  try {
    await route[1](ctx, url, ...match.slice(1).map(decodeURIComponent));
  } catch (e) {
    if (!ctx.alive || e.name === "AbortError" || e.status === 401) return;
    view.replaceChildren(errorBox(e));
  }
}

document.addEventListener("click", (e) => {
  const a = e.target.closest("a[href]");
  if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  if (a.target || a.hasAttribute("download")) return;
  const u = new URL(a.href, location.href);
  if (u.origin !== location.origin || /^\/(api|static)\//.test(u.pathname)) return;
  e.preventDefault();
  if (u.pathname + u.search === location.pathname + location.search && !u.hash) return;
  go(u.pathname + u.search);
});

window.addEventListener("popstate", () => render());

// True when a key press belongs to a field or a control rather than to the page.
function typing(e) {
  const t = e.target;
  if (e.ctrlKey || e.metaKey || e.altKey) return true;
  return !!(t && t.closest && t.closest("input, select, textarea, [contenteditable]"));
}

// ---------------------------------------------------------------------------------------------
// Cameras: a card per camera

async function viewCameras(ctx) {
  document.title = "Cameras · nvr-cli";
  const grid = h("div", { class: "grid cameras", id: "cameras" });
  let latestDay = {};
  try {
    const { days } = await api("/api/days", { signal: ctx.signal });
    for (const d of days) for (const c of d.cameras || []) if (!latestDay[c] || d.day > latestDay[c]) latestDay[c] = d.day;
  } catch (e) {
    if (e.status === 401 || e.name === "AbortError") throw e;
    latestDay = {};
  }

  const draw = (cameras) => {
    const today = localDay();
    grid.replaceChildren(
      ...cameras.map((cam) => {
        const last = cam.last_event;
        const day = latestDay[cam.name] || (last && last.day) || today;
        const dayText = day === today ? "today" : fmtDay(day);
        const t = last && last.day === day ? `?t=${clock(last.start_ts)}` : "";
        return h(
          "article",
          { class: `card camera state-${cam.state}`, dataset: { camera: cam.name } },
          h(
            "a",
            { class: "thumb-link", href: `/events?camera=${enc(cam.name)}`, "aria-label": `Events of ${cam.name}` },
            thumb(cam.thumbnail, last ? `Latest event of ${cam.name}, ${fmtTime(last.start_ts)}` : `${cam.name}`),
          ),
          h(
            "div",
            { class: "meta" },
            h(
              "div",
              { class: "row" },
              h("h2", {}, cam.name),
              h("span", { class: `badge state ${cam.state}`, title: cam.verdict || "" }, cam.state),
            ),
            h("p", { class: "muted verdict" }, cam.verdict && cam.verdict !== "ok" ? cam.verdict : ""),
            h(
              "dl",
              { class: "facts compact" },
              h("dt", {}, "fps"),
              h("dd", {}, cam.fps != null ? cam.fps.toFixed(1) : "–"),
              h("dt", {}, "Last event"),
              h("dd", {}, last ? `${fmtDate(last.start_ts)} ${fmtTime(last.start_ts)}` : "none"),
              h("dt", {}, "Today"),
              h(
                "dd",
                {},
                `${cam.events_today || 0} event${cam.events_today === 1 ? "" : "s"}`,
                cam.unreviewed_today ? h("span", { class: "badge new" }, `${cam.unreviewed_today} unreviewed`) : "",
              ),
            ),
            h(
              "div",
              { class: "actions" },
              h("a", { class: "button", href: `/live/${enc(cam.name)}` }, "Live"),
              h("a", { class: "button", href: `/events?camera=${enc(cam.name)}` }, "Events"),
              cam.unreviewed_today
                ? h("a", { class: "button", href: `/events?camera=${enc(cam.name)}&reviewed=false` }, "Unreviewed")
                : "",
              h("a", { class: "button", href: `/timeline/${enc(cam.name)}/${day}${t}` }, `Timeline ${dayText}`),
            ),
          ),
        );
      }),
    );
    if (!cameras.length) grid.replaceChildren(h("p", { class: "notice" }, "No cameras are configured."));
  };

  const { cameras } = await api("/api/cameras", { signal: ctx.signal });
  if (!ctx.alive) return;
  draw(cameras);
  view.replaceChildren(
    h("div", { class: "heading" }, h("h1", {}, "Cameras"), h("a", { class: "button", href: "/live" }, "Watch all live")),
    grid,
  );
  const timer = setInterval(async () => {
    try {
      const data = await api("/api/cameras", { signal: ctx.signal });
      if (ctx.alive) draw(data.cameras);
    } catch (e) {
      // keep the last answer on screen
    }
  }, 10000);
  ctx.onCleanup(() => clearInterval(timer));
}

// ---------------------------------------------------------------------------------------------
// Live: the camera's own H.264 as fragmented MP4 over a WebSocket, played through Media Source
// Extensions (no re-encode anywhere); a snapshot a second where that cannot play.

const LIVE_LAG = 1.0; // seconds behind the newest frame before the player jumps to it
// A player starts at the keyframe the server replays (up to a GOP behind): between these it plays a
// little faster until it is close to the newest frame, without the visible jump of a seek.
const LIVE_CATCH_UP = 0.4; // seconds behind: play at LIVE_FAST
const LIVE_NEAR = 0.2; // seconds behind: back to normal speed
const LIVE_FAST = 1.25;
const LIVE_KEEP = 10; // seconds of played video kept in the buffer: the rest is removed
const LIVE_QUEUE = 8e6; // bytes waiting for the decoder before the player starts over at a keyframe
const LIVE_RETRY_MAX = 10000; // ms: the longest wait between two attempts to reconnect
const LIVE_FAILURES = 3; // decode failures in a row before a tile gives up on video for snapshots
const SNAPSHOT_EVERY = 1000; // ms from one snapshot request to the next
// ms between two asks for video while the server has none (no recorder yet, or one restarting):
// a tile opened before its recorder started plays once it has, without a reload
const LIVE_RECHECK = 10000;

// The Media Source API of this browser: the classic one, or the managed one (iPhones have only that).
function mediaSourceClass() {
  return window.MediaSource || window.ManagedMediaSource || null;
}

// A tile's parts: a 16:9 frame with the video (or the snapshot) and a state badge, and a line
// saying why when it is not live.
function liveTile(camera, { link = true } = {}) {
  const video = h("video", { muted: true, playsinline: true, autoplay: true, "aria-label": `${camera}, live` });
  video.muted = true; // the attribute alone does not make a script-created video muted
  video.disableRemotePlayback = true; // the managed Media Source plays only without AirPlay
  const snap = h("img", { class: "live-snap", alt: `${camera}, latest picture`, hidden: true });
  const badge = h("span", { class: "badge live-state" }, "connecting");
  const note = h("span", { class: "live-note", hidden: true }); // why no snapshot shows
  const why = h("p", { class: "muted live-why" });
  const parts = [video, snap, note, badge];
  const frame = link
    ? h("a", { class: "live-frame", href: `/live/${enc(camera)}`, "aria-label": `${camera} full size` }, parts)
    : h("div", { class: "live-frame" }, parts);
  const el = h("article", { class: "live-tile", dataset: { camera, state: "connecting" } }, frame);
  const show = (state, reason = "") => {
    el.dataset.state = state;
    badge.textContent = state;
    why.textContent = reason;
  };
  return { el, frame, video, snap, note, why, show };
}

// Plays `camera` into a tile until stop(): the protocol of docs/web-api.md "Live".
function livePlayer(camera, tile) {
  const { video, snap, note } = tile;
  const url = `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}/api/cameras/${enc(camera)}/live`;
  const fetches = new AbortController();
  let stopped = false;
  let ws = null;
  let opened = false; // whether this socket's handshake succeeded
  let backoff = 1000;
  let retry = null;
  let recheck = null; // the next ask for video while the server said it has none
  let ms = null;
  let sb = null;
  let queue = [];
  let queued = 0;
  let snapping = false;
  let snapRun = 0; // the snapshot loop's number: a request of an ended loop does nothing on its return
  let snapTimer = null;
  let shown = null; // the snapshot's object URL
  let fellBack = ""; // why snapshots show instead of video
  let failures = 0; // failed attempts to play since video last played
  let playedFrom = null; // currentTime when this stream's video began to play

  function releaseMedia() {
    queue = [];
    queued = 0;
    sb = null;
    if (ms && ms.readyState === "open") {
      try {
        ms.endOfStream();
      } catch (e) {
        // closing anyway
      }
    }
    ms = null;
    if (video.getAttribute("src")) {
      URL.revokeObjectURL(video.getAttribute("src"));
      video.removeAttribute("src");
      video.load(); // detaches the MediaSource, so the browser frees its buffers
    }
  }

  // A fresh MediaSource for each init segment: after a reconnect the timestamps start over.
  function newSource(mime) {
    releaseMedia();
    playedFrom = null;
    const Source = mediaSourceClass();
    const source = new Source();
    ms = source;
    source.addEventListener(
      "sourceopen",
      () => {
        if (ms !== source) return;
        try {
          sb = source.addSourceBuffer(mime);
        } catch (e) {
          fallback("snapshot", `This browser cannot play this camera's video (${e.message})`);
          return;
        }
        sb.addEventListener("updateend", () => {
          chase();
          pump();
        });
        pump();
      },
      { once: true },
    );
    video.src = URL.createObjectURL(source);
  }

  // One append (or removal) at a time: a SourceBuffer refuses a second while it is updating.
  function pump() {
    if (!sb || sb.updating || !ms || ms.readyState !== "open") return;
    const b = video.buffered;
    if (b.length && video.currentTime - b.start(0) > LIVE_KEEP + 5) {
      sb.remove(0, video.currentTime - LIVE_KEEP); // memory stays flat however long one watches
      return;
    }
    const next = queue.shift();
    if (!next) return;
    queued -= next.byteLength;
    try {
      sb.appendBuffer(next);
    } catch (e) {
      if (e.name === "QuotaExceededError" && b.length && video.currentTime - b.start(0) > 1) {
        // the browser's buffer is full: drop what was played and try this one again
        queue.unshift(next);
        queued += next.byteLength;
        sb.remove(0, video.currentTime - 1);
        return;
      }
      failed(`the browser refused the video (${e.name})`);
    }
  }

  // The browser could not take or decode the video: start over, and after a few failures in a row
  // (no playback between them) show snapshots instead of reconnecting for ever.
  function failed(reason) {
    failures += 1;
    if (failures >= LIVE_FAILURES) fallback("snapshot", `This browser could not play this camera's video (${reason})`);
    else restart(reason);
  }

  // Stay at the live edge: a player that fell behind (a busy tab, a stall) jumps to the newest frame
  // instead of drifting further behind; a gap left by dropped fragments is jumped the same way.
  function chase() {
    const b = video.buffered;
    if (!b.length) return;
    const start = b.start(b.length - 1);
    const end = b.end(b.length - 1);
    const t = video.currentTime;
    const lag = end - t;
    if (playedFrom === null) playedFrom = t;
    else if (t - playedFrom > 2) failures = 0; // it plays: earlier failures are forgiven
    if (t < start || lag > LIVE_LAG) {
      video.currentTime = Math.max(start, end - 0.1);
      video.playbackRate = 1;
    } else if (lag > LIVE_CATCH_UP) {
      video.playbackRate = LIVE_FAST;
    } else if (lag < LIVE_NEAR) {
      video.playbackRate = 1;
    }
    if (video.paused) video.play().catch(() => {});
  }

  function closeSocket() {
    if (!ws) return;
    const sock = ws;
    ws = null;
    sock.onmessage = sock.onclose = sock.onerror = null;
    sock.close(1000);
  }

  function connect() {
    retry = null;
    if (stopped) return;
    const sock = new WebSocket(url);
    sock.binaryType = "arraybuffer";
    ws = sock;
    opened = false;
    sock.onopen = () => {
      opened = true;
    };
    sock.onmessage = (e) => {
      if (ws !== sock) return;
      if (typeof e.data === "string") onText(e.data);
      else onData(e.data);
    };
    sock.onclose = (e) => {
      if (ws !== sock) return;
      ws = null;
      lost(e);
    };
  }

  function onText(text) {
    let msg;
    try {
      msg = JSON.parse(text);
    } catch (e) {
      return;
    }
    if (msg.type === "init") {
      if (!mediaSourceClass().isTypeSupported(msg.mime)) {
        const what = msg.codec === "hevc" ? "H.265" : `This camera's video (${msg.mime})`;
        fallback("snapshot", `${what} cannot play in this browser`);
        return;
      }
      if (fellBack) resumeVideo(); // the server has video again
      newSource(msg.mime);
    } else if (msg.type === "state") {
      if (fellBack && msg.state !== "unavailable") {
        // asking again while snapshots show: the tile stays as it is until video comes
      } else if (msg.state === "live") {
        backoff = 1000;
        tile.show("live");
      } else if (msg.state === "reconnecting") {
        queue = [];
        queued = 0;
        tile.show("reconnecting", msg.reason || "");
      } else if (msg.state === "unavailable") {
        fallback("unavailable", `${msg.reason || "No live video"}`);
      } else if (msg.state === "connecting" && tile.el.dataset.state !== "reconnecting") {
        tile.show("connecting", msg.via === "camera" ? "from the camera" : "");
      }
    }
  }

  function onData(data) {
    if (!ms) return; // video before its init: not ours to decode
    queue.push(data);
    queued += data.byteLength;
    if (queued > LIVE_QUEUE) restart("the browser fell behind");
    else pump();
  }

  function lost(e) {
    if (stopped) return;
    if (e.code === 4404) {
      tile.show("unavailable", `There is no camera ${camera}`);
      return;
    }
    if (e.code === 4401) {
      needLogin(); // logged out elsewhere, or the session expired
      return;
    }
    if (fellBack) {
      recheck = setTimeout(ask, LIVE_RECHECK); // no video came this time: the snapshots go on
      return;
    }
    if (e.code === 1001 && !e.reason) e = { code: e.code, reason: "the server is stopping" };
    tile.show("reconnecting", e.reason || (opened ? "the connection was lost" : "no answer from the server"));
    if (!opened) {
      // a refused handshake says nothing: ask the API whether the login ended or the camera went
      api("/api/cameras", { signal: fetches.signal })
        .then(({ cameras }) => {
          if (stopped || cameras.some((c) => c.name === camera)) return;
          clearTimeout(retry);
          tile.show("unavailable", `There is no camera ${camera}`);
        })
        .catch(() => {});
    }
    retry = setTimeout(connect, backoff);
    backoff = Math.min(backoff * 2, LIVE_RETRY_MAX);
  }

  // Start over from a fresh socket (the server begins it at a keyframe), after the backoff: a
  // browser that keeps failing does not hammer the server.
  function restart(reason) {
    closeSocket();
    releaseMedia();
    tile.show("reconnecting", reason);
    clearTimeout(retry);
    retry = setTimeout(connect, backoff);
    backoff = Math.min(backoff * 2, LIVE_RETRY_MAX);
  }

  function fallback(state, reason) {
    closeSocket();
    clearTimeout(retry);
    clearTimeout(recheck);
    releaseMedia();
    video.hidden = true;
    fellBack = reason;
    tile.show(state, reason);
    if (!snapping) {
      snapping = true;
      snapshot(++snapRun);
    }
    // what this browser cannot play stays so; what the server lacks now may come
    if (state === "unavailable") recheck = setTimeout(ask, LIVE_RECHECK);
  }

  // Ask the server for video again while snapshots show.
  function ask() {
    recheck = null;
    if (!stopped && fellBack && !ws) connect();
  }

  // Video again after snapshots: they stop, the video shows.
  function resumeVideo() {
    fellBack = "";
    snapping = false;
    snapRun += 1;
    clearTimeout(snapTimer);
    snap.hidden = true;
    note.hidden = true;
    video.hidden = false;
    tile.show("connecting");
  }

  // The last picture stays, dimmed, with the reason over it.
  function noPicture(message) {
    tile.why.textContent = fellBack;
    snap.classList.add("stale");
    note.textContent = `${shown ? "No new picture" : "No picture"}: ${message}`;
    note.hidden = false;
  }

  // The next snapshot only once the last one has arrived (or failed): a slow link gets fewer.
  async function snapshot(run) {
    const began = Date.now();
    try {
      const r = await fetch(`/api/cameras/${enc(camera)}/latest.jpg?t=${began}`, {
        credentials: "same-origin",
        cache: "no-store",
        signal: fetches.signal,
      });
      if (run !== snapRun) return; // video came back meanwhile
      if (r.status === 401) {
        needLogin();
        return;
      }
      if (!r.ok) {
        let message = `${r.status} ${r.statusText}`;
        try {
          message = (await r.json()).error || message;
        } catch (e) {
          // the status says enough
        }
        noPicture(message);
      } else {
        const blob = await r.blob();
        if (stopped || run !== snapRun) return;
        const old = shown;
        shown = URL.createObjectURL(blob);
        snap.src = shown;
        await snap.decode().catch(() => {});
        if (old) URL.revokeObjectURL(old);
        snap.hidden = false;
        snap.classList.remove("stale");
        note.hidden = true;
        tile.why.textContent = `${fellBack}: showing a snapshot every second`;
      }
    } catch (e) {
      if (e.name === "AbortError" || stopped || run !== snapRun) return;
      noPicture(e.message);
    }
    if (!stopped && run === snapRun) {
      snapTimer = setTimeout(() => snapshot(run), Math.max(0, SNAPSHOT_EVERY - (Date.now() - began)));
    }
  }

  // A timer as well as the appends: a video the browser paused (a hidden tab) plays on, and a
  // stalled one is brought back to the edge, even when no data arrives.
  const tick = setInterval(() => {
    if (sb && !sb.updating) chase();
  }, 1000);
  // A decode error ends the MediaSource: nothing more could be appended to it.
  const onVideoError = () => {
    if (!ms || stopped) return; // our own detaching (releaseMedia) is no failure
    const err = video.error;
    failed(err ? `decoding failed: ${err.message || "code " + err.code}` : "decoding failed");
  };
  video.addEventListener("error", onVideoError);

  if (!mediaSourceClass()) {
    fallback("snapshot", "This browser cannot play live video (no Media Source Extensions)");
  } else {
    connect();
  }

  return {
    stop() {
      stopped = true;
      clearInterval(tick);
      video.removeEventListener("error", onVideoError);
      clearTimeout(retry);
      clearTimeout(recheck);
      clearTimeout(snapTimer);
      fetches.abort();
      closeSocket();
      releaseMedia();
      if (shown) URL.revokeObjectURL(shown);
      shown = null;
      snap.removeAttribute("src");
    },
  };
}

// Live: every camera, a tile each.
async function viewLive(ctx) {
  document.title = "Live · nvr-cli";
  const { cameras } = await api("/api/cameras", { signal: ctx.signal });
  if (!ctx.alive) return;
  const grid = h("div", { class: "grid live", id: "live" });
  for (const cam of cameras) {
    const tile = liveTile(cam.name);
    tile.el.append(
      h(
        "div",
        { class: "meta" },
        h("div", { class: "row" }, h("h2", {}, h("a", { href: `/live/${enc(cam.name)}` }, cam.name))),
        tile.why,
      ),
    );
    grid.append(tile.el);
    const player = livePlayer(cam.name, tile);
    ctx.onCleanup(() => player.stop());
  }
  view.replaceChildren(h("h1", {}, "Live"), cameras.length ? grid : h("p", { class: "notice" }, "No cameras are configured."));
}

// Live: one camera, as large as the window allows.
async function viewLiveOne(ctx, url, camera) {
  document.title = `${camera} live · nvr-cli`;
  const { cameras } = await api("/api/cameras", { signal: ctx.signal });
  if (!ctx.alive) return;
  if (!cameras.some((c) => c.name === camera)) {
    view.replaceChildren(h("h1", {}, "Not found"), h("p", {}, `There is no camera ${camera}. `, h("a", { href: "/live" }, "All cameras")));
    return;
  }
  const tile = liveTile(camera, { link: false });
  tile.el.classList.add("one");
  const full = h(
    "button",
    {
      type: "button",
      class: "small",
      onclick: () => (document.fullscreenElement ? document.exitFullscreen() : tile.frame.requestFullscreen()).catch(() => {}),
    },
    "Full screen",
  );
  if (!tile.frame.requestFullscreen) full.hidden = true;
  view.replaceChildren(
    h(
      "div",
      { class: "heading" },
      h("h1", {}, camera),
      h(
        "span",
        { class: "live-links" },
        h("a", { class: "button small", href: "/live" }, "All cameras"),
        h("a", { class: "button small", href: `/events?camera=${enc(camera)}` }, "Events"),
        h("a", { class: "button small", href: `/timeline/${enc(camera)}/${localDay()}` }, "Timeline"),
        full,
      ),
    ),
    tile.el,
  );
  tile.el.append(tile.why);
  const player = livePlayer(camera, tile);
  ctx.onCleanup(() => player.stop());
}

// ---------------------------------------------------------------------------------------------
// Events: the grid, its filters (in the URL), cursor paging

// The API's filters from a page URL's query (the same names).
function eventFilters(q) {
  const p = new URLSearchParams();
  for (const c of q.getAll("camera")) if (c) p.append("camera", c);
  for (const k of ["day", "from", "to", "min_score", "reviewed"]) if (q.get(k)) p.set(k, q.get(k));
  for (const l of q.getAll("label")) if (l) p.append("label", l);
  return p;
}

async function viewEvents(ctx, url) {
  document.title = "Events · nvr-cli";
  const q = url.searchParams;
  const { cameras } = await api("/api/cameras", { signal: ctx.signal });
  const filters = eventFilters(q);
  const limit = Math.min(500, Math.max(1, Number(q.get("limit")) || PAGE_SIZE));

  const apply = (p) => {
    const s = p.toString();
    go(`/events${s ? "?" + s : ""}`);
  };
  const with_ = (k, v) => {
    const p = eventFilters(q);
    if (q.get("limit")) p.set("limit", q.get("limit"));
    if (Array.isArray(v)) {
      p.delete(k);
      for (const x of v) p.append(k, x);
    } else if (v === "" || v == null) p.delete(k);
    else p.set(k, v);
    return p;
  };

  const camSel = h(
    "select",
    {
      id: "f-camera",
      onchange: () => apply(with_("camera", camSel.value)),
    },
    h("option", { value: "" }, "All cameras"),
    cameras.map((c) => h("option", { value: c.name, selected: q.getAll("camera")[0] === c.name }, c.name)),
  );
  const dayIn = h("input", {
    type: "date",
    id: "f-day",
    value: q.get("day") || "",
    onchange: () => {
      const p = with_("day", dayIn.value);
      p.delete("from");
      p.delete("to");
      apply(p);
    },
  });
  const rangeIn = (k) =>
    h("input", {
      type: "datetime-local",
      step: 1,
      id: `f-${k}`,
      value: inputValue(parseTime(q.get(k))),
      onchange: (e) => {
        const ts = parseTime(e.target.value);
        const p = with_(k, ts == null ? "" : isoLocal(ts));
        p.delete("day");
        apply(p);
      },
    });
  const labels = q.getAll("label");
  const labelButtons = LABELS.map((l) =>
    h(
      "button",
      {
        type: "button",
        class: `toggle label-${l}`,
        "aria-pressed": labels.includes(l) ? "true" : "false",
        dataset: { label: l },
        onclick: () => apply(with_("label", labels.includes(l) ? labels.filter((x) => x !== l) : [...labels, l])),
      },
      l === "motion" ? "motion only" : l,
    ),
  );
  const scores = ["", "0.5", "0.6", "0.7", "0.8", "0.9"];
  if (q.get("min_score") && !scores.includes(q.get("min_score"))) scores.push(q.get("min_score"));
  const scoreSel = h(
    "select",
    { id: "f-score", onchange: () => apply(with_("min_score", scoreSel.value)) },
    scores.map((s) =>
      h("option", { value: s, selected: (q.get("min_score") || "") === s }, s ? `≥ ${fmtScore(Number(s))}` : "any"),
    ),
  );
  const unrev = h("input", {
    type: "checkbox",
    id: "f-unreviewed",
    checked: q.get("reviewed") === "false",
    onchange: () => apply(with_("reviewed", unrev.checked ? "false" : "")),
  });

  const count = h("span", { class: "muted", id: "count", "aria-live": "polite" });
  const markAll = h(
    "button",
    {
      type: "button",
      id: "mark-all",
      onclick: async () => {
        if (!confirm("Mark every event that matches these filters as reviewed (not only those shown)?")) return;
        const body = { reviewed: true };
        for (const k of ["camera", "label"]) if (filters.getAll(k).length) body[k] = filters.getAll(k);
        for (const k of ["day", "from", "to"]) if (filters.get(k)) body[k] = filters.get(k);
        if (filters.get("min_score")) body.min_score = Number(filters.get("min_score"));
        // only what this list could have shown: an event that arrived since stays unreviewed
        if (newestTs !== null) {
          const given = filters.get("to") ? Date.parse(filters.get("to")) / 1000 : NaN;
          body.to = Math.min(newestTs + 0.001, Number.isNaN(given) ? Infinity : given);
        }
        try {
          const r = await api("/api/reviewed", { method: "POST", body, signal: ctx.signal });
          toast(`${r.changed} event${r.changed === 1 ? "" : "s"} marked reviewed`);
          render();
        } catch (e) {
          if (e.status !== 401) toast(e.message);
        }
      },
    },
    "Mark all reviewed",
  );

  const field = (label, input, id) => h("label", { class: "field", for: id }, h("span", {}, label), input);
  const active = [...filters.keys()].length;
  const form = h(
    "form",
    { class: "filters", onsubmit: (e) => e.preventDefault(), "aria-label": "Filters" },
    field("Camera", camSel, "f-camera"),
    field("Day", dayIn, "f-day"),
    field("From", rangeIn("from"), "f-from"),
    field("To", rangeIn("to"), "f-to"),
    field("Min score", scoreSel, "f-score"),
    h("div", { class: "field labels", role: "group", "aria-label": "Labels" }, h("span", {}, "Label"), labelButtons),
    h("label", { class: "check", for: "f-unreviewed" }, unrev, " Unreviewed only"),
    filters.toString() ? h("a", { class: "button small", href: "/events" }, "Clear filters") : "",
  );

  // With a day chosen: that day's timelines are one click away.
  let dayLinks = "";
  if (q.get("day")) {
    const day = q.get("day");
    const chosen = q.getAll("camera").filter(Boolean);
    const names = chosen.length ? chosen : cameras.map((c) => c.name);
    dayLinks = h(
      "p",
      { class: "daylinks" },
      h("span", { class: "muted" }, `Timelines of ${fmtDay(day)}: `),
      names.map((n) => h("a", { class: "button small", href: `/timeline/${enc(n)}/${day}` }, n)),
    );
  }

  const grid = h("div", { class: "grid events", id: "events" });
  const more = h("button", { type: "button", id: "load-more", class: "wide" }, "Load more");
  const empty = h("p", { class: "notice", hidden: true }, "No events match these filters.");
  const listQuery = filters.toString() ? `?${filters}` : "";

  view.replaceChildren(
    h("div", { class: "heading" }, h("h1", {}, "Events"), count, markAll),
    h(
      "details",
      { class: "filterbox", open: active > 0 || matchMedia("(min-width: 701px)").matches },
      // a phone folds the filters away; a desktop shows them (CSS hides the summary there)
      h("summary", {}, `Filters${active ? ` (${active} set)` : ""}`),
      form,
    ),
    dayLinks,
    grid,
    empty,
    more,
  );

  const seen = new Set();
  let newestTs = null; // the newest start shown: "mark all reviewed" goes no further
  let cursor = null;
  let loading = false;
  let done = false;
  const load = async () => {
    if (loading || done || !ctx.alive) return;
    loading = true;
    more.disabled = true;
    more.textContent = "Loading…";
    try {
      const p = new URLSearchParams(filters);
      p.set("limit", limit);
      if (cursor) p.set("cursor", cursor);
      const data = await api(`/api/events?${p}`, { signal: ctx.signal });
      for (const ev of data.events) {
        if (seen.has(ev.id)) continue;
        seen.add(ev.id);
        newestTs = newestTs === null ? ev.start_ts : Math.max(newestTs, ev.start_ts);
        grid.append(eventCard(ev, listQuery));
      }
      cursor = data.next_cursor;
      done = !cursor;
    } catch (e) {
      if (!ctx.alive || e.status === 401 || e.name === "AbortError") return;
      toast(e.message);
    } finally {
      loading = false;
    }
    if (!ctx.alive) return;
    count.textContent = `${seen.size}${done ? "" : "+"} event${seen.size === 1 ? "" : "s"}`;
    empty.hidden = seen.size > 0;
    markAll.hidden = seen.size === 0;
    more.hidden = done;
    more.disabled = false;
    more.textContent = "Load more";
    // Infinite scroll: the observer only speaks on a change, so keep going while the end is in view.
    if (!done && more.getBoundingClientRect().top < innerHeight + 300) load();
  };
  more.addEventListener("click", load);
  const io = new IntersectionObserver((entries) => entries.some((e) => e.isIntersecting) && load(), {
    rootMargin: "300px",
  });
  io.observe(more);
  ctx.onCleanup(() => io.disconnect());
  await load();
}

function eventCard(ev, listQuery = "") {
  return h(
    "a",
    {
      class: `card event${ev.reviewed ? " reviewed" : " unreviewed"}`,
      href: `/events/${enc(ev.id)}${listQuery}`,
      dataset: { id: ev.id, camera: ev.camera, reviewed: String(!!ev.reviewed) },
    },
    thumb(ev.thumbnail, `${ev.camera}, ${fmtDate(ev.start_ts)} ${fmtTime(ev.start_ts)}`),
    h(
      "div",
      { class: "meta" },
      h(
        "div",
        { class: "row" },
        h("strong", { class: "time" }, fmtTime(ev.start_ts)),
        h("span", { class: "muted" }, fmtDuration(ev.duration_seconds)),
      ),
      h(
        "div",
        { class: "row" },
        h("span", { class: "cam" }, ev.camera),
        h("span", { class: "muted" }, fmtDate(ev.start_ts)),
      ),
      h(
        "div",
        { class: "row" },
        h("span", { class: "chips" }, eventLabels(ev).map(chip)),
        ev.top_score != null ? h("span", { class: "score", title: "best object's score" }, fmtScore(ev.top_score)) : "",
      ),
    ),
    ev.reviewed ? "" : h("span", { class: "badge new corner" }, "new"),
  );
}

// ---------------------------------------------------------------------------------------------
// One event: the clip playing, its facts, reviewed, previous / next

async function neighbours(ev, q, signal) {
  // Earlier and later events under the list's filters (the page the event was opened from).
  const base = eventFilters(q);
  base.delete("reviewed"); // stepping through must not lose the event just marked
  if (q.get("reviewed")) base.set("reviewed", q.get("reviewed"));
  const lo = parseTime(q.get("from"));
  const hi = parseTime(q.get("to"));
  const other = (list) => list.filter((e) => e.id !== ev.id);
  const fetchList = async (extra) => {
    const p = new URLSearchParams(base);
    for (const [k, v] of Object.entries(extra)) p.set(k, v);
    return (await api(`/api/events?${p}`, { signal })).events;
  };
  // Earlier: the first after this one in newest-first order.
  const toTs = hi != null ? Math.min(hi, ev.start_ts) : ev.start_ts;
  const earlier = other(await fetchList({ to: toTs, limit: 5 })).find(
    (e) => e.start_ts < ev.start_ts || (e.start_ts === ev.start_ts && e.id < ev.id),
  );
  // Later: the last of a newest-first window that starts at this one; the window grows until found.
  let later = null;
  for (const w of [600, 3600, 86400, 7 * 86400, 90 * 86400, null]) {
    const extra = { from: lo != null ? Math.max(lo, ev.start_ts) : ev.start_ts, limit: 500 };
    if (w != null) extra.to = hi != null ? Math.min(hi, ev.start_ts + w) : ev.start_ts + w;
    else if (hi != null) extra.to = hi;
    const list = other(await fetchList(extra)).filter(
      (e) => e.start_ts > ev.start_ts || (e.start_ts === ev.start_ts && e.id > ev.id),
    );
    if (list.length) {
      later = list[list.length - 1];
      break;
    }
    if (w == null || (hi != null && ev.start_ts + w >= hi)) break;
  }
  return { earlier, later };
}

function timelineHref(camera, day, ts) {
  return `/timeline/${enc(camera)}/${day}?t=${clock(ts)}&zoom=${new Date(ts * 1000).getHours()}`;
}

async function viewEvent(ctx, url, id) {
  const q = url.searchParams;
  let ev = await api(`/api/events/${enc(id)}`, { signal: ctx.signal });
  if (!ctx.alive) return;
  document.title = `${ev.camera} ${fmtTime(ev.start_ts)} · nvr-cli`;
  const facts = ev.facts || {};
  const listQuery = eventFilters(q).toString() ? `?${eventFilters(q)}` : "";

  const video = h("video", {
    id: "clip",
    controls: true,
    playsinline: true,
    autoplay: true,
    preload: "auto",
    poster: ev.thumbnail || null,
    src: ev.clip,
    "aria-label": `Clip of ${ev.camera} at ${fmtTime(ev.start_ts)}`,
  });
  video.muted = true; // autoplay is allowed muted; the clips have no sound
  ctx.onCleanup(() => {
    video.pause();
    video.removeAttribute("src");
    video.load();
  });

  const badge = h("span", { class: "badge", id: "reviewed-state" });
  const reviewBtn = h("button", { type: "button", id: "toggle-reviewed", class: "primary" });
  const drawReviewed = () => {
    badge.textContent = ev.reviewed ? "reviewed" : "unreviewed";
    badge.className = `badge ${ev.reviewed ? "done" : "new"}`;
    reviewBtn.textContent = ev.reviewed ? "Mark unreviewed" : "Mark reviewed";
    reviewBtn.setAttribute("aria-pressed", String(!!ev.reviewed));
  };
  const toggleReviewed = async () => {
    reviewBtn.disabled = true;
    try {
      const r = await api(`/api/events/${enc(ev.id)}/reviewed`, {
        method: "POST",
        body: { reviewed: !ev.reviewed },
        signal: ctx.signal,
      });
      ev = { ...ev, reviewed: !!r.reviewed };
      drawReviewed();
    } catch (e) {
      if (e.status !== 401 && ctx.alive) toast(e.message);
    } finally {
      reviewBtn.disabled = false;
    }
  };
  reviewBtn.addEventListener("click", toggleReviewed);
  drawReviewed();

  const prevBtn = h("button", { type: "button", id: "prev-event", disabled: true }, "← Earlier");
  const nextBtn = h("button", { type: "button", id: "next-event", disabled: true }, "Later →");
  const nb = { earlier: null, later: null };
  const step = (which) => nb[which] && go(`/events/${enc(nb[which].id)}${listQuery}`);
  prevBtn.addEventListener("click", () => step("earlier"));
  nextBtn.addEventListener("click", () => step("later"));
  ctx.listen(document, "keydown", (e) => {
    if (typing(e)) return;
    if (e.key === "p" || e.key === ",") step("earlier");
    else if (e.key === "n" || e.key === ".") step("later");
    else if (e.key === "r") toggleReviewed();
  });

  const dl = h("dl", { class: "facts", id: "facts" });
  const fact = (name, value) => {
    if (value == null || value === "" || (Array.isArray(value) && !value.length)) return;
    dl.append(h("dt", {}, name), h("dd", {}, value));
  };
  fact("Camera", ev.camera);
  fact("Start", `${fmtDay(ev.day, true)}, ${fmtTime(ev.start_ts)}`);
  fact("Length", fmtDuration(ev.duration_seconds));
  fact("Labels", h("span", { class: "chips" }, eventLabels(ev).map(chip)));
  const objects = facts.objects || [];
  if (objects.length) {
    fact(
      "Objects",
      h(
        "ul",
        { class: "plain" },
        objects.map((o) =>
          h(
            "li",
            {},
            chip(o.label),
            " ",
            h("strong", {}, fmtScore(o.score)),
            o.first_seen ? h("span", { class: "muted" }, ` first seen ${fmtTime(parseTime(o.first_seen))}`) : "",
          ),
        ),
      ),
    );
  }
  const qrs = facts.qr || facts.qr_codes || ev.qr || [];
  if (qrs.length) {
    fact(
      "QR codes",
      h(
        "ul",
        { class: "plain" },
        qrs.map((c) =>
          h(
            "li",
            {},
            h("code", {}, typeof c === "string" ? c : c.payload),
            c.seen ? h("span", { class: "muted" }, ` seen ${fmtTime(parseTime(c.seen))}`) : "",
          ),
        ),
      ),
    );
  }
  fact("Top score", fmtScore(ev.top_score));
  fact("Motion peak", ev.motion_score != null ? `${(ev.motion_score * 100).toFixed(1)}% of the picture` : "");
  const pre = facts.pre_alarm ?? facts.pre_alarm_seconds ?? ev.pre_alarm_seconds;
  fact("Pre-alarm", pre != null ? fmtDuration(pre) : "");
  fact("Why it ended", facts.end_reason || ev.end_reason);
  fact("Triggered", facts.trigger ? fmtTime(parseTime(facts.trigger)) : "");
  fact("Motion for", facts.motion_seconds != null ? fmtDuration(facts.motion_seconds) : "");
  fact(
    "Frames",
    facts.frames != null ? `${facts.frames}${facts.frames_lost ? ` (${facts.frames_lost} lost)` : ""}` : "",
  );
  const size = facts.size || (facts.width && facts.height ? `${facts.width}×${facts.height}` : "");
  fact("Size", Array.isArray(size) ? size.join("×") : size);
  fact("fps", facts.fps != null ? Number(facts.fps).toFixed(1) : "");
  fact("Encoding", facts.encoding);
  const lossless = facts.lossless;
  if (lossless && lossless.file) {
    const n = (lossless.segments || []).length;
    fact(
      "Lossless cut",
      `${fmtDuration(lossless.duration_seconds)} from ${n} segment${n === 1 ? "" : "s"}` +
        `${(lossless.gaps || []).length ? ", with gaps" : ""}`,
    );
  }
  fact("Error", facts.error);
  fact("Event", ev.event != null ? `#${ev.event}${ev.part > 1 ? `, part ${ev.part}` : ""}` : "");
  if (ev.recovered) fact("Recovered", "yes: cut from a recording that was interrupted");

  const tlHref = timelineHref(ev.camera, ev.day, ev.start_ts);
  view.replaceChildren(
    h(
      "div",
      { class: "heading" },
      h("a", { class: "button small", href: `/events${listQuery}` }, "← Events"),
      h("h1", {}, `${ev.camera} · ${fmtDate(ev.start_ts)} ${fmtTime(ev.start_ts)}`),
      badge,
    ),
    h(
      "div",
      { class: "event-layout" },
      h(
        "section",
        { class: "player", "aria-label": "Clip" },
        facts.clip_pending
          ? h("p", { class: "notice" }, "The clip is still being cut from the recording: reload in a moment.")
          : "",
        video,
        h(
          "div",
          { class: "actions" },
          prevBtn,
          nextBtn,
          h("span", { class: "muted keys" }, "keys: p / n, r to mark"),
        ),
      ),
      h(
        "aside",
        { class: "side" },
        h(
          "div",
          { class: "actions" },
          reviewBtn,
          h("a", { class: "button", href: `${ev.clip}?download=1`, download: "", id: "download" }, "Download"),
          h("a", { class: "button", href: tlHref, id: "to-timeline" }, "On the timeline"),
        ),
        dl,
        h(
          "p",
          { class: "muted small" },
          h("a", { href: ev.sidecar, target: "_blank", rel: "noopener" }, "The sidecar (JSON)"),
        ),
      ),
    ),
  );

  const found = await neighbours(ev, q, ctx.signal).catch(() => ({}));
  if (!ctx.alive) return;
  Object.assign(nb, found);
  if (nb.earlier) {
    prevBtn.disabled = false;
    prevBtn.title = `${nb.earlier.camera} ${fmtDate(nb.earlier.start_ts)} ${fmtTime(nb.earlier.start_ts)}`;
  }
  if (nb.later) {
    nextBtn.disabled = false;
    nextBtn.title = `${nb.later.camera} ${fmtDate(nb.later.start_ts)} ${fmtTime(nb.later.start_ts)}`;
  }
}

// ---------------------------------------------------------------------------------------------
// Calendar: a month grid of the days with recordings

async function viewCalendar(ctx, url) {
  document.title = "Calendar · nvr-cli";
  const q = url.searchParams;
  const camera = q.get("camera") || "";
  const [{ cameras }, { days }] = await Promise.all([
    api("/api/cameras", { signal: ctx.signal }),
    api(`/api/days${camera ? `?camera=${enc(camera)}` : ""}`, { signal: ctx.signal }),
  ]);
  if (!ctx.alive) return;
  const byDay = new Map(days.map((d) => [d.day, d]));
  const months = [...new Set(days.map((d) => d.day.slice(0, 7)))].sort();
  let month = q.get("month");
  if (!month || !/^\d{4}-\d{2}$/.test(month)) month = months[months.length - 1] || localDay().slice(0, 7);
  const [y, m] = month.split("-").map(Number);
  const prev = months.filter((x) => x < month).pop();
  const next = months.find((x) => x > month);
  const calHref = (mo) => `/calendar?${camera ? `camera=${enc(camera)}&` : ""}month=${mo}`;

  const camSel = h(
    "select",
    {
      id: "cal-camera",
      onchange: () => go(`/calendar${camSel.value ? `?camera=${enc(camSel.value)}` : ""}`),
    },
    h("option", { value: "" }, "All cameras"),
    cameras.map((c) => h("option", { value: c.name, selected: c.name === camera }, c.name)),
  );

  const title = new Date(y, m - 1, 1).toLocaleDateString([], { month: "long", year: "numeric" });
  const nav = h(
    "div",
    { class: "monthnav" },
    prev
      ? h("a", { class: "button", href: calHref(prev), id: "prev-month", "aria-label": "Previous month with recordings" }, "←")
      : h("button", { type: "button", disabled: true, "aria-label": "No earlier month with recordings" }, "←"),
    h("h2", { id: "month-title" }, title),
    next
      ? h("a", { class: "button", href: calHref(next), id: "next-month", "aria-label": "Next month with recordings" }, "→")
      : h("button", { type: "button", disabled: true, "aria-label": "No later month with recordings" }, "→"),
  );

  const grid = h("div", { class: "calendar", role: "grid", "aria-label": title });
  const weekdays = [];
  for (let i = 0; i < 7; i++) {
    weekdays.push(new Date(2024, 0, 1 + i).toLocaleDateString([], { weekday: "short" })); // 2024-01-01 is a Monday
  }
  grid.append(h("div", { class: "week head", role: "row" }, weekdays.map((w) => h("div", { role: "columnheader" }, w))));
  const first = (new Date(y, m - 1, 1).getDay() + 6) % 7; // Monday first
  const count = new Date(y, m, 0).getDate();
  const today = localDay();
  let row = h("div", { class: "week", role: "row" });
  for (let i = 0; i < first; i++) row.append(h("div", { class: "day blank", role: "gridcell" }));
  for (let d = 1; d <= count; d++) {
    const day = `${month}-${p2(d)}`;
    const info = byDay.get(day);
    const cls = ["day"];
    if (day === today) cls.push("today");
    let cell;
    if (info) {
      cls.push("has");
      if (info.unreviewed) cls.push("unreviewed");
      const hours = (info.recorded_seconds || 0) / 3600;
      const label = `${fmtDay(day, true)}: ${info.events} events, ${info.unreviewed} unreviewed${
        hours ? `, ${hours.toFixed(1)} h recorded` : ""
      }`;
      cell = h(
        "a",
        {
          class: cls.join(" "),
          role: "gridcell",
          href: `/events?${camera ? `camera=${enc(camera)}&` : ""}day=${day}`,
          "aria-label": label,
          title: label,
          dataset: { day },
        },
        h("span", { class: "num" }, d),
        h(
          "span",
          { class: "counts" },
          info.events ? h("span", { class: "n" }, `${info.events} ev`) : "",
          info.unreviewed ? h("span", { class: "badge new" }, `${info.unreviewed}`) : "",
        ),
        hours ? h("span", { class: "rec", style: `--rec:${Math.min(1, hours / 24)}` }) : "",
      );
    } else {
      cell = h(
        "div",
        { class: `${cls.join(" ")} empty`, role: "gridcell", "aria-disabled": "true", dataset: { day } },
        h("span", { class: "num" }, d),
      );
    }
    row.append(cell);
    if ((first + d) % 7 === 0) {
      grid.append(row);
      row = h("div", { class: "week", role: "row" });
    }
  }
  if (row.childNodes.length) {
    while (row.childNodes.length < 7) row.append(h("div", { class: "day blank", role: "gridcell" }));
    grid.append(row);
  }

  const monthDays = days.filter((d) => d.day.startsWith(month));
  const list = h(
    "ul",
    { class: "daylist" },
    monthDays.map((d) =>
      h(
        "li",
        {},
        h("a", { href: `/events?${camera ? `camera=${enc(camera)}&` : ""}day=${d.day}` }, fmtDay(d.day)),
        h("span", { class: "muted" }, ` ${d.events} events`),
        d.unreviewed ? h("span", { class: "badge new" }, `${d.unreviewed} unreviewed`) : "",
        h(
          "span",
          { class: "tl" },
          (camera ? [camera] : d.cameras || []).map((c) =>
            h("a", { class: "button small", href: `/timeline/${enc(c)}/${d.day}` }, `${c} timeline`),
          ),
        ),
      ),
    ),
  );

  view.replaceChildren(
    h(
      "div",
      { class: "heading" },
      h("h1", {}, "Calendar"),
      h("label", { class: "field inline", for: "cal-camera" }, h("span", {}, "Camera"), camSel),
    ),
    nav,
    days.length ? grid : h("p", { class: "notice" }, "Nothing has been recorded yet."),
    h(
      "p",
      { class: "legend muted" },
      h("span", { class: "swatch has" }),
      " recordings ",
      h("span", { class: "swatch unreviewed" }),
      " unreviewed events",
    ),
    h("p", { class: "muted small" }, "A day opens its events; each camera's timeline of the day is listed below."),
    list,
  );
}

// ---------------------------------------------------------------------------------------------
// Day timeline: coverage, gaps, events; a click plays the continuous recording from that moment

// The moment of a browser-local wall clock on the API's day (the day's bounds are the API's).
function tsOfClock(rec, day, hh, mm = 0, ss = 0) {
  const d = dayDate(day);
  let ts = new Date(d.getFullYear(), d.getMonth(), d.getDate(), hh, mm, ss).getTime() / 1000;
  while (ts >= rec.end_ts) ts -= 86400;
  while (ts < rec.start_ts) ts += 86400;
  return Math.min(Math.max(ts, rec.start_ts), rec.end_ts - 0.001);
}

// Zoom of a timeline URL: `zoom=8` is the hour 8, `zoom=8:30` the ten minutes from 8:30.
function parseZoom(s) {
  const m = /^(\d{1,2})(?::(\d{1,2}))?$/.exec(s || "");
  if (!m) return null;
  const hh = Number(m[1]);
  const mm = m[2] != null ? Number(m[2]) : null;
  if (hh > 23 || (mm != null && mm > 59)) return null;
  return mm == null ? { h: hh, m: 0, span: 3600 } : { h: hh, m: mm - (mm % 10), span: 600 };
}

const zoomText = (z) => (z.span === 3600 ? String(z.h) : `${z.h}:${p2(z.m)}`);

function zoomAround(ts, span) {
  const d = new Date(ts * 1000);
  return { h: d.getHours(), m: span === 3600 ? 0 : d.getMinutes() - (d.getMinutes() % 10), span };
}

// Plays the day's segments as they are: the one holding a moment from the right offset, then the next
// one, preloaded in a second hidden <video> and swapped in at `ended`.
class SegmentPlayer {
  constructor(box, segments, { onTime, onMessage }) {
    this.segments = segments;
    this.onTime = onTime;
    this.onMessage = onMessage;
    this.videos = [0, 1].map((i) => {
      const v = h("video", { playsinline: true, preload: "auto", "aria-label": "Continuous recording" });
      v.muted = true;
      v.hidden = i === 1;
      v.controls = i === 0;
      v.addEventListener("ended", () => v === this.active && this.advance());
      v.addEventListener("timeupdate", () => v === this.active && this.tick());
      v.addEventListener("play", () => v === this.active && this.loop());
      v.addEventListener("error", () => v === this.active && this.failed(v));
      box.append(v);
      return v;
    });
    this.active = this.videos[0];
    this.standby = this.videos[1];
    this.active.classList.add("active");
    this.index = -1; // the active video's segment
    this.standbyIndex = -1;
    this.raf = 0;
    this.pending = null; // the offset a source still loading will start from
  }

  get ts() {
    if (this.index < 0) return null;
    // Until a new source's metadata is in, its currentTime is 0: report the moment it will seek to.
    const at = this.pending != null ? this.pending : this.active.currentTime || 0;
    return this.segments[this.index].start_ts + at;
  }

  indexAt(ts) {
    const s = this.segments;
    for (let i = 0; i < s.length; i++) if (s[i].start_ts <= ts && ts < s[i].end_ts) return i;
    return -1;
  }

  // Play from a moment: the segment holding it, or the next recording after it.
  playAt(ts) {
    let i = this.indexAt(ts);
    if (i < 0) {
      i = this.segments.findIndex((s) => s.start_ts > ts);
      if (i < 0) {
        this.onMessage(`Nothing was recorded at or after ${fmtTime(ts)} on this day.`);
        return false;
      }
      this.onMessage(`Nothing was recorded at ${fmtTime(ts)}: playing from ${fmtTime(this.segments[i].start_ts)}.`);
      ts = this.segments[i].start_ts;
    } else {
      this.onMessage("");
    }
    this.start(i, Math.max(0, ts - this.segments[i].start_ts));
    return true;
  }

  start(i, offset) {
    const seg = this.segments[i];
    this.pending = null;
    if (this.index === i && this.active.readyState >= 1) {
      this.active.currentTime = offset;
      this.active.play().catch(() => {});
      this.tick();
      return;
    }
    if (this.standbyIndex === i) {
      this.swap(offset);
      return;
    }
    const v = this.active;
    this.index = i;
    v.parentNode.classList.remove("idle");
    v.dataset.segment = seg.id;
    v.dataset.startTs = String(seg.start_ts);
    v.src = seg.url;
    this.pending = offset;
    const begin = () => {
      if (this.index !== i || v !== this.active) return;
      v.currentTime = Math.min(offset, Math.max(0, (v.duration || offset) - 0.05));
      this.pending = null;
      v.play().catch(() => {});
      this.tick();
    };
    if (v.readyState >= 1) begin();
    else v.addEventListener("loadedmetadata", begin, { once: true });
    this.tick();
    this.preload();
  }

  // Load the segment after the active one, when it follows without a gap.
  preload() {
    const n = this.index + 1;
    const s = this.segments;
    if (n >= s.length || s[n].start_ts - s[this.index].end_ts > CONTIGUOUS || this.standbyIndex === n) return;
    this.standbyIndex = n;
    this.standby.dataset.segment = s[n].id;
    this.standby.dataset.startTs = String(s[n].start_ts);
    this.standby.src = s[n].url;
    this.standby.load();
  }

  swap(offset) {
    const old = this.active;
    const v = this.standby;
    this.active = v;
    this.standby = old;
    this.index = this.standbyIndex;
    this.standbyIndex = -1;
    old.pause();
    v.currentTime = offset;
    v.hidden = false;
    v.controls = true;
    v.classList.add("active");
    old.hidden = true;
    old.controls = false;
    old.classList.remove("active");
    v.play().catch(() => {});
    this.tick();
    this.preload();
  }

  advance() {
    const i = this.index + 1;
    const s = this.segments;
    if (i >= s.length) {
      this.onMessage("End of this day's recording.");
      return;
    }
    const gap = s[i].start_ts - s[this.index].end_ts;
    const offset = Math.max(0, -gap); // segments may overlap by a few frames
    if (gap > CONTIGUOUS) this.onMessage(`Skipped a gap of ${fmtDuration(gap)} (nothing recorded).`);
    this.start(i, offset);
  }

  // A segment that will not play (retention deleted it since the day was loaded, a damaged file):
  // say so and go on with the next one, as a gap would be.
  failed(v) {
    const err = v.error ? `${v.error.code} ${v.error.message || ""}` : "";
    const i = this.index;
    this.onMessage(`The segment at ${fmtTime(this.segments[i].start_ts)} could not be played ${err}`.trim());
    if (this.standbyIndex === i + 1) this.standbyIndex = -1; // load it in the active element instead
    if (i + 1 < this.segments.length) this.start(i + 1, 0);
  }

  tick() {
    const ts = this.ts;
    if (ts != null) this.onTime(ts);
  }

  loop() {
    cancelAnimationFrame(this.raf);
    const step = () => {
      this.tick();
      if (!this.active.paused) this.raf = requestAnimationFrame(step);
    };
    this.raf = requestAnimationFrame(step);
  }

  destroy() {
    cancelAnimationFrame(this.raf);
    for (const v of this.videos) {
      v.pause();
      v.removeAttribute("src");
      v.load();
    }
  }
}

async function viewTimeline(ctx, url, camera, day) {
  document.title = `${camera} ${day} · nvr-cli`;
  const q = url.searchParams;
  const [rec, daysData] = await Promise.all([
    api(`/api/cameras/${enc(camera)}/recordings?day=${day}`, { signal: ctx.signal }),
    api(`/api/days?camera=${enc(camera)}`, { signal: ctx.signal }).catch(() => ({ days: [] })),
  ]);
  if (!ctx.alive) return;
  const segments = rec.segments.filter((s) => s.valid !== false);
  const events = [...rec.events].sort((a, b) => a.start_ts - b.start_ts);
  const dayList = daysData.days.map((d) => d.day).sort();
  const prevDay = dayList.filter((d) => d < day).pop();
  const nextDay = dayList.find((d) => d > day);

  // State: the part of the day shown, what plays, the range chosen for an export.
  let zoom = parseZoom(q.get("zoom"));
  let playTs = null;
  let cursorTs = null; // the last moment clicked or played
  let selecting = false;
  let sel = null; // {a, b}
  const range = () => {
    if (zoom == null) return [rec.start_ts, rec.end_ts];
    const a = tsOfClock(rec, day, zoom.h, zoom.m);
    return [a, Math.min(a + zoom.span, rec.end_ts)];
  };
  const t = q.get("t");
  if (t && /^\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?$/.test(t)) {
    const [hh, mm, ss] = t.split(":").map(Number);
    cursorTs = tsOfClock(rec, day, hh, mm, ss || 0);
  }

  const track = h("div", {
    class: "track",
    id: "track",
    tabindex: 0,
    role: "group",
    "aria-label": "Day timeline: click a moment to play it; keys n / p jump between events",
  });
  const marks = h("div", { class: "lane events-lane" });
  const cover = h("div", { class: "lane cover-lane" });
  const selBox = h("div", { class: "selection", hidden: true });
  const playhead = h("div", { class: "playhead", id: "playhead", hidden: true });
  const hover = h("div", { class: "hoverlabel", hidden: true });
  track.append(marks, cover, selBox, playhead, hover);
  const axis = h("div", { class: "axis", "aria-hidden": zoom == null ? null : "true" });
  const rangeTitle = h("span", { class: "range-title" });
  const message = h("p", { class: "message", id: "tl-message", role: "status", "aria-live": "polite" });
  const now = h("span", { class: "now", id: "now" }, "–");

  const pct = (ts) => {
    const [a, b] = range();
    return ((ts - a) / (b - a)) * 100;
  };
  const tsAt = (clientX) => {
    const r = track.getBoundingClientRect();
    const f = Math.min(1, Math.max(0, (clientX - r.left) / r.width));
    const [a, b] = range();
    return a + f * (b - a);
  };
  const block = (cls, a, b, attrs = {}) => {
    const [v0, v1] = range();
    if (b <= v0 || a >= v1) return null;
    const left = pct(Math.max(a, v0));
    const width = pct(Math.min(b, v1)) - left;
    return h("div", { class: cls, style: `left:${left}%;width:${width}%`, ...attrs });
  };

  // Coverage: contiguous runs of segments.
  const runs = [];
  for (const s of segments) {
    const last = runs[runs.length - 1];
    if (last && s.start_ts - last.b <= CONTIGUOUS) last.b = Math.max(last.b, s.end_ts);
    else runs.push({ a: s.start_ts, b: s.end_ts });
  }

  const draw = () => {
    const [v0, v1] = range();
    track.dataset.from = String(v0); // the part of the day shown (epoch seconds), for a reader of the page
    track.dataset.to = String(v1);
    cover.replaceChildren(
      ...runs.map((r) =>
        block("tl-cov", r.a, r.b, { title: `Recorded ${fmtTime(r.a)} – ${fmtTime(r.b)}`, dataset: { a: r.a, b: r.b } }),
      ),
      ...rec.gaps.map((g) =>
        block("tl-gap", g.start_ts, g.end_ts, {
          title: `Gap ${fmtTime(g.start_ts)} – ${fmtTime(g.end_ts)}${g.reason ? `: ${g.reason}` : ""}`,
        }),
      ),
    );
    marks.replaceChildren(
      ...events.map((ev) =>
        block(
          `tl-mark ${ev.reviewed ? "reviewed" : "unreviewed"} ${eventLabels(ev)
            .map((l) => `label-${l}`)
            .join(" ")}`,
          ev.start_ts,
          ev.end_ts,
          {
            title: `${fmtTime(ev.start_ts)} ${eventLabels(ev).join(", ")} (${fmtDuration(ev.duration_seconds)})`,
            dataset: { id: ev.id, ts: ev.start_ts },
          },
        ),
      ),
    );
    // Axis: hour ticks of the browser's clock (every few hours when narrow); minutes when zoomed.
    const width = track.getBoundingClientRect().width || 800;
    const ticks = [];
    if (zoom == null) {
      const every = Math.max(1, Math.ceil(24 / (width / 56)));
      const d = new Date(v0 * 1000);
      d.setMinutes(0, 0, 0);
      let ts = d.getTime() / 1000;
      if (ts < v0) ts += 3600;
      for (; ts < v1; ts += 3600) {
        const hr = new Date(ts * 1000).getHours();
        if (hr % every) continue;
        ticks.push(
          h(
            "button",
            {
              type: "button",
              class: `tick${pct(ts) < 2 ? " first" : ""}`,
              style: `left:${pct(ts)}%`,
              title: `Zoom to ${p2(hr)}:00`,
              onclick: () => setZoom({ h: hr, m: 0, span: 3600 }),
            },
            `${p2(hr)}`,
          ),
        );
      }
    } else {
      const minutes = zoom.span / 60;
      const every = zoom.span === 3600 ? (width < 500 ? 15 : 5) : width < 500 ? 2 : 1;
      for (let m = 0; m <= minutes; m += every) {
        const ts = v0 + m * 60;
        if (ts > v1) break;
        const edge = m === 0 ? " first" : m + every > minutes ? " last" : "";
        ticks.push(h("span", { class: `tick${edge}`, style: `left:${pct(ts)}%` }, fmtHm(ts)));
      }
    }
    axis.replaceChildren(...ticks);
    rangeTitle.textContent =
      zoom == null ? `${fmtDay(day, true)} · whole day` : `${fmtDay(day)} · ${fmtHm(v0)} – ${fmtHm(v1)}`;
    for (const [b, span] of zoomBtns) b.setAttribute("aria-pressed", String((zoom ? zoom.span : null) === span));
    earlierBtn.hidden = laterBtn.hidden = zoom == null;
    earlierBtn.disabled = v0 <= rec.start_ts;
    laterBtn.disabled = v1 >= rec.end_ts;
    drawSelection();
    drawPlayhead();
    if (playTs != null) {
      currentEvent = null;
      markCurrent(playTs);
    }
  };

  const drawPlayhead = () => {
    const ts = playTs ?? cursorTs;
    const [v0, v1] = range();
    if (ts == null || ts < v0 || ts > v1) {
      playhead.hidden = true;
    } else {
      playhead.hidden = false;
      playhead.style.left = `${pct(ts)}%`;
    }
    if (ts != null) playhead.dataset.ts = String(ts);
  };

  const drawSelection = () => {
    if (!sel) {
      selBox.hidden = true;
      selInfo.hidden = true;
      return;
    }
    const a = Math.min(sel.a, sel.b ?? sel.a);
    const b = Math.max(sel.a, sel.b ?? sel.a);
    const [v0, v1] = range();
    selBox.hidden = b < v0 || a > v1;
    selBox.style.left = `${pct(Math.max(a, v0))}%`;
    selBox.style.width = `${Math.max(0.2, pct(Math.min(b, v1)) - pct(Math.max(a, v0)))}%`;
    selInfo.hidden = false;
    if (sel.b == null) {
      selText.textContent = `From ${fmtTime(a)}: click the end of the range`;
      exportLink.hidden = true;
    } else {
      selText.textContent = `${fmtTime(a)} – ${fmtTime(b)} (${fmtDuration(b - a)})`;
      exportLink.hidden = false;
      exportLink.href = `/export?${qs({ camera, from: isoLocal(Math.floor(a)), to: isoLocal(Math.ceil(b)) })}`;
    }
  };

  let lastUrlUpdate = 0;
  const updateUrl = (force = false) => {
    const ts = playTs ?? cursorTs;
    const now = performance.now();
    if (!force && now - lastUrlUpdate < 1000) return;
    lastUrlUpdate = now;
    const s = [ts != null ? `t=${clock(ts)}` : "", zoom ? `zoom=${zoomText(zoom)}` : ""].filter(Boolean).join("&");
    const next = `/timeline/${enc(camera)}/${day}${s ? "?" + s : ""}`;
    if (next !== location.pathname + location.search) history.replaceState(null, "", next);
  };

  const setZoom = (z) => {
    zoom = z;
    draw();
    updateUrl(true);
  };

  const box = h("div", { class: "videobox idle", id: "timeline-player" });
  const player = new SegmentPlayer(box, segments, {
    onTime: (ts) => {
      playTs = ts;
      cursorTs = ts;
      markCurrent(ts);
      now.textContent = `${fmtTime(ts)}`;
      const [v0, v1] = range();
      // Follow the playback out of the part of the day shown.
      if (zoom != null && (ts >= v1 || ts < v0) && !player.active.paused) {
        zoom = zoomAround(ts, zoom.span);
        draw();
      } else drawPlayhead();
      updateUrl();
    },
    onMessage: (text) => {
      message.textContent = text;
    },
  });
  ctx.onCleanup(() => player.destroy());

  // The event that holds the moment playing stands out in the list and on the bar.
  let currentEvent = null;
  const markCurrent = (ts) => {
    const ev = events.find((e) => e.start_ts <= ts && ts < e.end_ts) || null;
    if (ev === currentEvent) return;
    currentEvent = ev;
    for (const el of view.querySelectorAll(".events-of-day li, .tl-mark")) {
      el.classList.toggle("current", !!ev && el.dataset.id === ev.id);
    }
  };

  const playFrom = (ts) => {
    cursorTs = ts;
    player.playAt(ts);
    drawPlayhead();
    updateUrl(true);
  };

  const jump = (dir) => {
    const ts = playTs ?? cursorTs ?? rec.start_ts;
    const ev =
      dir > 0 ? events.find((e) => e.start_ts > ts + 0.5) : [...events].reverse().find((e) => e.start_ts < ts - 1.5);
    if (!ev) {
      message.textContent = dir > 0 ? "No later event on this day." : "No earlier event on this day.";
      return;
    }
    const [v0, v1] = range();
    if (zoom != null && (ev.start_ts < v0 || ev.start_ts >= v1)) {
      zoom = zoomAround(ev.start_ts, zoom.span);
      draw();
    }
    playFrom(ev.start_ts);
    message.textContent = `Event at ${fmtTime(ev.start_ts)}: ${eventLabels(ev).join(", ")}`;
  };

  // Clicks play; a drag (or two clicks in "Select range") chooses a range for an export.
  let down = null;
  track.addEventListener("pointerdown", (e) => {
    if (e.button !== 0 || e.target.closest(".tick")) return;
    down = { x: e.clientX, ts: tsAt(e.clientX), drag: false };
    track.setPointerCapture(e.pointerId);
  });
  track.addEventListener("pointermove", (e) => {
    if (!down) {
      const r = track.getBoundingClientRect();
      hover.hidden = false;
      hover.style.left = `${((e.clientX - r.left) / r.width) * 100}%`;
      hover.textContent = fmtTime(tsAt(e.clientX));
      return;
    }
    if (!down.drag && Math.abs(e.clientX - down.x) > 8) down.drag = true;
    if (down.drag) {
      sel = { a: down.ts, b: tsAt(e.clientX) };
      drawSelection();
    }
  });
  track.addEventListener("pointerleave", () => {
    hover.hidden = true;
  });
  track.addEventListener("pointerup", (e) => {
    if (!down) return;
    const d = down;
    down = null;
    if (d.drag) {
      sel = { a: d.ts, b: tsAt(e.clientX) };
      selecting = false;
      selectBtn.setAttribute("aria-pressed", "false");
      drawSelection();
      return;
    }
    if (selecting) {
      if (!sel || sel.b != null) sel = { a: d.ts, b: null };
      else {
        sel.b = d.ts;
        selecting = false;
        selectBtn.setAttribute("aria-pressed", "false");
      }
      drawSelection();
      return;
    }
    const mark = e.target.closest(".tl-mark");
    playFrom(mark ? Number(mark.dataset.ts) : d.ts);
  });
  track.addEventListener("pointercancel", () => {
    down = null;
  });
  track.addEventListener("keydown", (e) => {
    if (e.key !== "ArrowLeft" && e.key !== "ArrowRight") return;
    e.preventDefault();
    const step = (e.shiftKey ? 60 : 10) * (e.key === "ArrowLeft" ? -1 : 1);
    playFrom((playTs ?? cursorTs ?? range()[0]) + step);
  });
  ctx.listen(document, "keydown", (e) => {
    if (typing(e)) return;
    if (e.key === "n" || e.key === ".") jump(1);
    else if (e.key === "p" || e.key === ",") jump(-1);
    else if (e.key === "z") {
      const spans = [null, 3600, 600];
      zoomTo(spans[(spans.indexOf(zoom ? zoom.span : null) + 1) % spans.length]);
    }
    else if (e.key === "Escape" && sel) {
      sel = null;
      selecting = false;
      drawSelection();
    }
  });
  ctx.listen(window, "resize", () => draw());

  // Zoom: the whole day, the hour or the ten minutes around what plays (or was clicked).
  const zoomTo = (span) => {
    if (span == null) return setZoom(null);
    const [v0, v1] = range();
    const ts = playTs ?? cursorTs ?? (runs.length ? runs[runs.length - 1].a : (v0 + v1) / 2);
    setZoom(zoomAround(ts, span));
  };
  const zoomBtns = [
    [null, "Day"],
    [3600, "Hour"],
    [600, "10 min"],
  ].map(([span, text]) => [
    h("button", { type: "button", class: "seg", dataset: { zoom: span || "day" }, onclick: () => zoomTo(span) }, text),
    span,
  ]);
  const shift = (dir) => {
    const [v0] = range();
    const ts = v0 + dir * zoom.span + 1;
    if (ts >= rec.start_ts - zoom.span && ts < rec.end_ts) setZoom(zoomAround(Math.max(ts, rec.start_ts), zoom.span));
  };
  const earlierBtn = h("button", { type: "button", "aria-label": "Earlier", onclick: () => shift(-1) }, "←");
  const laterBtn = h("button", { type: "button", "aria-label": "Later", onclick: () => shift(1) }, "→");
  const selectBtn = h(
    "button",
    {
      type: "button",
      id: "select-range",
      "aria-pressed": "false",
      onclick: () => {
        selecting = !selecting;
        selectBtn.setAttribute("aria-pressed", String(selecting));
        if (selecting) {
          sel = null;
          message.textContent = "Click the start and then the end of the range (or drag across the bar).";
        }
        drawSelection();
      },
    },
    "Select range",
  );
  const selText = h("span", { id: "sel-text" });
  const exportLink = h("a", { class: "button primary", id: "export-range", hidden: true }, "Export this range");
  const selInfo = h(
    "div",
    { class: "selinfo", hidden: true },
    selText,
    exportLink,
    h(
      "button",
      {
        type: "button",
        class: "small",
        onclick: () => {
          sel = null;
          drawSelection();
        },
      },
      "Clear",
    ),
  );

  const evList = h(
    "ol",
    { class: "daylist events-of-day" },
    events.map((ev) =>
      h(
        "li",
        { class: ev.reviewed ? "" : "unreviewed", dataset: { id: ev.id } },
        h("button", { type: "button", class: "small", onclick: () => playFrom(ev.start_ts) }, fmtTime(ev.start_ts)),
        h("span", { class: "chips" }, eventLabels(ev).map(chip)),
        h("span", { class: "muted" }, fmtDuration(ev.duration_seconds)),
        h("a", { href: `/events/${enc(ev.id)}` }, "open"),
      ),
    ),
  );

  const recorded = runs.reduce((s, r) => s + (r.b - r.a), 0);
  const page = h("div", { class: "tl-page" });
  view.replaceChildren(page);
  page.append(
    h(
      "div",
      { class: "heading" },
      h("h1", {}, `${camera} · ${fmtDay(day)}`),
      h(
        "span",
        { class: "daynav" },
        prevDay
          ? h("a", { class: "button small", href: `/timeline/${enc(camera)}/${prevDay}` }, `← ${fmtDay(prevDay)}`)
          : "",
        nextDay
          ? h("a", { class: "button small", href: `/timeline/${enc(camera)}/${nextDay}` }, `${fmtDay(nextDay)} →`)
          : "",
        h("a", { class: "button small", href: `/events?camera=${enc(camera)}&day=${day}` }, "Events"),
      ),
    ),
    h(
      "p",
      { class: "muted summary" },
      `${fmtDuration(recorded) || "nothing"} recorded in ${segments.length} segments, ` +
        `${rec.gaps.length} gap${rec.gaps.length === 1 ? "" : "s"}, ${events.length} event${events.length === 1 ? "" : "s"}`,
    ),
    h(
      "div",
      { class: "toolbar" },
      rangeTitle,
      h("span", { class: "spacer" }),
      earlierBtn,
      h("span", { class: "segmented", role: "group", "aria-label": "Zoom" }, zoomBtns.map((b) => b[0])),
      laterBtn,
    ),
    h("div", { class: "timeline" }, track, axis),
    h(
      "div",
      { class: "toolbar" },
      h("button", { type: "button", id: "prev-ev", onclick: () => jump(-1) }, "← Event"),
      h("button", { type: "button", id: "next-ev", onclick: () => jump(1) }, "Event →"),
      now,
      h(
        "span",
        { class: "legend muted" },
        h("span", { class: "swatch cov" }),
        " recorded ",
        h("span", { class: "swatch gap" }),
        " gap ",
        h("span", { class: "swatch mark" }),
        " event ",
        h("span", { class: "swatch unreviewed" }),
        " unreviewed",
      ),
      h("span", { class: "spacer" }),
      selectBtn,
    ),
    selInfo,
    message,
    h(
      "div",
      { class: "stage" },
      box,
      h(
        "section",
        { class: "dayevents", "aria-label": "Events of the day" },
        h("h2", {}, "Events of the day"),
        events.length ? evList : h("p", { class: "muted" }, "No events on this day."),
      ),
    ),
  );
  draw();
  if (!segments.length) message.textContent = "No continuous recording on this day.";
  else if (cursorTs != null) playFrom(cursorTs);
  else message.textContent = "Click the bar to play from that moment (n / p: next / previous event).";
}

// ---------------------------------------------------------------------------------------------
// Export: a range as one lossless MP4, with progress

async function viewExport(ctx, url) {
  document.title = "Export · nvr-cli";
  const q = url.searchParams;
  const { cameras } = await api("/api/cameras", { signal: ctx.signal });
  if (!ctx.alive) return;
  const camSel = h(
    "select",
    { id: "x-camera", required: true },
    cameras.map((c) => h("option", { value: c.name, selected: c.name === q.get("camera") }, c.name)),
  );
  const fromIn = h("input", {
    type: "datetime-local",
    step: 1,
    id: "x-from",
    required: true,
    value: inputValue(parseTime(q.get("from"))),
  });
  const toIn = h("input", {
    type: "datetime-local",
    step: 1,
    id: "x-to",
    required: true,
    value: inputValue(parseTime(q.get("to"))),
  });
  const gaps = h("input", { type: "checkbox", id: "x-gaps" });
  const submit = h("button", { type: "submit", class: "primary", id: "x-start" }, "Export");
  const status = h("div", { class: "job", id: "job" });
  const recent = h("div", { id: "recent" });
  const field = (label, input, id) => h("label", { class: "field", for: id }, h("span", {}, label), input);

  const form = h(
    "form",
    {
      class: "filters export",
      onsubmit: async (e) => {
        e.preventDefault();
        const a = parseTime(fromIn.value);
        const b = parseTime(toIn.value);
        if (a == null || b == null || b <= a) {
          status.replaceChildren(errorBox(new Error("Choose a start before the end.")));
          return;
        }
        submit.disabled = true;
        try {
          const job = await api("/api/exports", {
            method: "POST",
            body: { camera: camSel.value, from: isoLocal(a), to: isoLocal(b), allow_gaps: gaps.checked },
            signal: ctx.signal,
          });
          const p = qs({ camera: camSel.value, from: isoLocal(a), to: isoLocal(b), id: job.id });
          history.replaceState(null, "", `/export?${p}`);
          follow(job);
        } catch (err) {
          if (ctx.alive && err.status !== 401) status.replaceChildren(errorBox(err));
        } finally {
          submit.disabled = false;
        }
      },
    },
    field("Camera", camSel, "x-camera"),
    field("From", fromIn, "x-from"),
    field("To", toIn, "x-to"),
    h("label", { class: "check", for: "x-gaps" }, gaps, " Allow gaps"),
    submit,
  );

  let timer = null;
  ctx.onCleanup(() => clearTimeout(timer));
  const follow = async (job) => {
    clearTimeout(timer);
    const bar = h("progress", { max: 1, value: job.progress || 0, id: "x-progress" });
    const state = h("span", { id: "x-state" }, job.state);
    status.replaceChildren(
      h("h2", {}, `Export of ${job.camera}`),
      h("p", { class: "muted" }, `${fmtTime(parseTime(job.from))} – ${fmtTime(parseTime(job.to))}`),
      h("div", { class: "progressline" }, bar, state),
    );
    const poll = async () => {
      let j;
      try {
        j = await api(`/api/exports/${enc(job.id)}`, { signal: ctx.signal });
      } catch (err) {
        if (ctx.alive && err.status !== 401 && err.name !== "AbortError") status.append(errorBox(err));
        return;
      }
      if (!ctx.alive) return;
      bar.value = j.progress || 0;
      state.textContent = `${j.state}${j.state === "running" ? ` ${Math.round((j.progress || 0) * 100)}%` : ""}`;
      if (j.state === "done") {
        bar.value = 1;
        await showDone(j);
        loadRecent();
      } else if (j.state === "failed") {
        status.append(errorBox(new Error(j.error || "The export failed.")));
      } else {
        timer = setTimeout(poll, 400);
      }
    };
    poll();
  };

  const showDone = async (j) => {
    const out = h(
      "div",
      { class: "done", id: "x-done" },
      h(
        "div",
        { class: "actions" },
        h("a", { class: "button primary", href: j.file, download: "", id: "x-file" }, `Download MP4 (${fmtBytes(j.size)})`),
        j.sidecar ? h("a", { class: "button", href: j.sidecar, target: "_blank", rel: "noopener" }, "Sidecar") : "",
      ),
    );
    status.append(out);
    if (!j.sidecar) return;
    try {
      const r = await fetch(j.sidecar, { credentials: "same-origin", signal: ctx.signal });
      const sc = await r.json();
      const dl = h("dl", { class: "facts" });
      const add = (k, v) => v != null && v !== "" && dl.append(h("dt", {}, k), h("dd", {}, v));
      const segs = sc.segments || [];
      add("Segments", segs.length ? `${segs.length}: ${segs.map((s) => (typeof s === "string" ? s : s.file || s.id)).join(", ")}` : "");
      const gl = sc.gaps || [];
      add(
        "Gaps",
        gl.length
          ? gl
              .map((g) =>
                g.start_ts != null || g.start != null
                  ? `${fmtTime(g.start_ts ?? parseTime(g.start))} – ${fmtTime(g.end_ts ?? parseTime(g.end))}`
                  : JSON.stringify(g),
              )
              .join("; ")
          : "none",
      );
      const dur = sc.duration_seconds ?? sc.duration;
      if (dur != null) add("Length", fmtDuration(dur));
      const cov = sc.covered || {};
      if (cov.from && cov.to) add("Covers", `${fmtTime(parseTime(cov.from))} – ${fmtTime(parseTime(cov.to))}`);
      if (sc.note) add("Note", sc.note);
      out.append(dl);
    } catch (e) {
      // the links are enough
    }
  };

  const loadRecent = async () => {
    try {
      const { exports } = await api("/api/exports", { signal: ctx.signal });
      if (!ctx.alive) return;
      recent.replaceChildren(
        exports.length ? h("h2", {}, "Recent exports") : "",
        h(
          "ul",
          { class: "daylist" },
          exports.slice(0, 20).map((x) =>
            h(
              "li",
              {},
              h("strong", {}, x.camera),
              ` ${fmtDate(parseTime(x.from))} ${fmtTime(parseTime(x.from))} – ${fmtTime(parseTime(x.to))} `,
              h("span", { class: `badge ${x.state === "done" ? "done" : x.state === "failed" ? "down" : ""}` }, x.state),
              x.file ? h("a", { href: x.file, download: "" }, "download") : "",
            ),
          ),
        ),
      );
    } catch (e) {
      // optional
    }
  };

  view.replaceChildren(
    h("h1", {}, "Export"),
    h(
      "p",
      { class: "muted" },
      "One lossless MP4 of the continuous recording (stream copy, no re-encode). ",
      "Choose a range here or on a camera's timeline.",
    ),
    form,
    status,
    recent,
  );
  if (q.get("id")) {
    try {
      follow(await api(`/api/exports/${enc(q.get("id"))}`, { signal: ctx.signal }));
    } catch (e) {
      if (ctx.alive && e.status !== 401) status.replaceChildren(errorBox(e));
    }
  }
  loadRecent();
}

// ---------------------------------------------------------------------------------------------
// Login

async function viewLogin(ctx, url) {
  document.title = "Log in · nvr-cli";
  const next = url.searchParams.get("next");
  // only a page of this site: "/\\evil.example" and the like resolve elsewhere, and are dropped
  let safeNext = "/";
  try {
    const u = new URL(next || "/", location.origin);
    if (u.origin === location.origin && !u.pathname.startsWith("/login")) safeNext = u.pathname + u.search;
  } catch (e) {
    safeNext = "/";
  }
  if (!session.loginRequired || session.user) {
    view.replaceChildren(
      h("h1", {}, "Log in"),
      h("p", {}, session.user ? `You are logged in as ${session.user}. ` : "No login is needed here. "),
      h("a", { class: "button", href: safeNext }, "Continue"),
    );
    return;
  }
  const userIn = h("input", { id: "l-user", name: "user", autocomplete: "username", required: true });
  const passIn = h("input", {
    id: "l-pass",
    name: "password",
    type: "password",
    autocomplete: "current-password",
    required: true,
  });
  const err = h("p", { class: "notice error", id: "l-error", role: "alert", hidden: true });
  const btn = h("button", { type: "submit", class: "primary wide" }, "Log in");
  const form = h(
    "form",
    {
      class: "login",
      id: "login",
      onsubmit: async (e) => {
        e.preventDefault();
        btn.disabled = true;
        err.hidden = true;
        try {
          const r = await api("/api/login", {
            method: "POST",
            body: { user: userIn.value, password: passIn.value },
          });
          session.user = r.user;
          renderWho();
          go(safeNext, { replace: true });
        } catch (ex) {
          err.hidden = false;
          if (ex.status === 401) err.textContent = "Wrong user name or password.";
          else if (ex.status === 429)
            err.textContent = `Too many attempts: try again in ${ex.retryAfter || "a few"} seconds.`;
          else err.textContent = ex.message;
          passIn.select();
        } finally {
          btn.disabled = false;
        }
      },
    },
    h("h1", {}, "Log in"),
    h("label", { class: "field", for: "l-user" }, h("span", {}, "User"), userIn),
    h("label", { class: "field", for: "l-pass" }, h("span", {}, "Password"), passIn),
    err,
    btn,
  );
  view.replaceChildren(form);
  userIn.focus();
}

// ---------------------------------------------------------------------------------------------

(async () => {
  try {
    await loadMe();
  } catch (e) {
    if (e.status !== 401) {
      view.replaceChildren(errorBox(new Error(`The server does not answer: ${e.message}`)));
      return;
    }
  }
  render();
})();
