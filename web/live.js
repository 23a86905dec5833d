// The live WebSocket (/api/v1/live): host status, new samples, alerts.
//
// One connection for the whole app. Pages say what they want with `live.subscribe({hosts, series,
// levels})` (a new subscription replaces the previous one, as on the server) and listen with
// `live.on(type, fn)`. The socket reconnects by itself with exponential back-off and jitter, sends
// the current subscription again, and then calls the `onCatchUp` callbacks so pages fetch what they
// missed (the server keeps nothing per client across connections). Once the server has sent a
// {"type": "ping"} message, silence for longer than two missed pings counts as a dead connection
// (a server that pings only with WebSocket control frames is not held to that).

const BACKOFF_MIN_MS = 1000;
const BACKOFF_MAX_MS = 30000;
const DEAD_AFTER_MS = 50000; // the server pings every 20 s

const handlers = new Map(); // type -> Set(fn)
const catchUps = new Set();
const stateListeners = new Set();

let socket = null;
let wanted = false; // connect() called and not stopped
let subscription = {};
let attempt = 0;
let everOpen = false;
let retryTimer = null;
let deadTimer = null;
let state = "closed";
let pinged = false; // the server sends JSON pings on this connection
let onUnauthorised = () => {};

function setState(next) {
  if (state === next) return;
  state = next;
  for (const fn of stateListeners) fn(state);
}

function wsUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/api/v1/live`;
}

function sendSubscription() {
  if (socket && socket.readyState === WebSocket.OPEN) {
    socket.send(JSON.stringify({ type: "subscribe", ...subscription }));
  }
}

function armDeadTimer() {
  clearTimeout(deadTimer);
  if (!pinged) return;
  deadTimer = setTimeout(() => {
    if (socket) socket.close(4000, "no message for too long");
  }, DEAD_AFTER_MS);
}

function dispatch(message) {
  const set = handlers.get(message.type);
  if (!set) return;
  for (const fn of set) {
    try {
      fn(message);
    } catch (exc) {
      console.error("live handler failed", message.type, exc);
    }
  }
}

function open() {
  clearTimeout(retryTimer);
  retryTimer = null;
  if (!wanted || (socket && socket.readyState <= WebSocket.OPEN)) return;
  setState("connecting");
  const ws = new WebSocket(wsUrl());
  socket = ws;
  let opened = false;
  pinged = false;
  ws.addEventListener("open", () => {
    opened = true;
    setState("open");
    armDeadTimer();
    sendSubscription();
    if (everOpen) for (const fn of catchUps) fn();
    everOpen = true;
  });
  ws.addEventListener("message", (ev) => {
    armDeadTimer();
    let message;
    try {
      message = JSON.parse(ev.data);
    } catch {
      return;
    }
    if (message && typeof message.type === "string") {
      if (message.type === "hello") attempt = 0; // a healthy connection resets the back-off
      if (message.type === "ping" && !pinged) {
        pinged = true;
        armDeadTimer();
      }
      if (message.type === "error") console.warn("live:", message.error);
      dispatch(message);
    }
  });
  ws.addEventListener("close", async (ev) => {
    clearTimeout(deadTimer);
    if (socket === ws) socket = null;
    if (!wanted) {
      setState("closed");
      return;
    }
    setState("reconnecting");
    attempt++;
    // A refused upgrade looks like any other close; after a few, ask whether we are signed out.
    if (!opened && attempt >= 2 && (await onUnauthorised())) {
      stop();
      return;
    }
    if (ev.code === 4401 || ev.code === 1008) {
      if (await onUnauthorised()) {
        stop();
        return;
      }
    }
    schedule();
  });
}

function schedule() {
  const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** Math.max(0, attempt - 1));
  const delay = base / 2 + Math.random() * (base / 2);
  clearTimeout(retryTimer);
  retryTimer = setTimeout(open, delay);
}

/** Start (or keep) the connection. `unauthorised` resolves true when the session is gone. */
export function connect(unauthorised) {
  if (unauthorised) onUnauthorised = unauthorised;
  wanted = true;
  open();
}

/** Close and do not reconnect (signed out). */
export function stop() {
  wanted = false;
  everOpen = false;
  attempt = 0;
  clearTimeout(retryTimer);
  clearTimeout(deadTimer);
  if (socket) socket.close(1000, "signed out");
  socket = null;
  setState("closed");
}

/** Replace the subscription: {hosts: [...] or ["*"], series: [ids], levels: [...]}. */
export function subscribe(next) {
  const clean = {};
  if (next.hosts && next.hosts.length) clean.hosts = next.hosts;
  if (next.series && next.series.length) clean.series = next.series.map(Number);
  if (next.levels && next.levels.length) clean.levels = next.levels;
  const same = JSON.stringify(clean) === JSON.stringify(subscription);
  subscription = clean;
  if (!same) sendSubscription();
}

/** Listen to messages of one type ("hosts", "samples", "alert", "hello", "ping"). */
export function on(type, fn) {
  if (!handlers.has(type)) handlers.set(type, new Set());
  handlers.get(type).add(fn);
  return () => handlers.get(type).delete(fn);
}

/** Called after every reconnect, once the subscription is sent again: fetch what was missed. */
export function onCatchUp(fn) {
  catchUps.add(fn);
  return () => catchUps.delete(fn);
}

/** True while the socket is open (pages poll instead when it is not). */
export function isOpen() {
  return state === "open";
}

export function onState(fn) {
  stateListeners.add(fn);
  fn(state);
  return () => stateListeners.delete(fn);
}

// A phone that wakes up should not wait for the back-off timer.
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible" && wanted && !socket) {
    attempt = 0;
    open();
  }
});
window.addEventListener("online", () => {
  if (wanted && !socket) {
    attempt = 0;
    open();
  }
});

export const live = { connect, stop, subscribe, on, onCatchUp, onState, isOpen };
