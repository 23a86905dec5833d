// This device's Web Push subscription: subscribe with the aggregator's VAPID key, register the
// subscription with the aggregator, and undo both. Permission is asked only from a user's tap
// (iOS 16.4+ allows it only there, and only in the home-screen app).

import { del, get, post } from "./api.js";

function b64urlToBytes(text) {
  const pad = "=".repeat((4 - (text.length % 4)) % 4);
  const bin = atob((text + pad).replace(/-/g, "+").replace(/_/g, "/"));
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function sameKey(buffer, bytes) {
  if (!buffer) return false;
  const a = new Uint8Array(buffer);
  return a.length === bytes.length && a.every((x, i) => x === bytes[i]);
}

const isIos = () => /iPad|iPhone|iPod/.test(navigator.userAgent) || (navigator.platform === "MacIntel" && navigator.maxTouchPoints > 1);
const standalone = () => window.matchMedia("(display-mode: standalone)").matches || navigator.standalone === true;

/** {ok: true} when this browser can take push notifications, else {ok: false, why: sentence}. */
export function pushSupport() {
  if (!window.isSecureContext) {
    return { ok: false, why: "Notifications need the aggregator served over HTTPS (or on localhost)." };
  }
  if (!("serviceWorker" in navigator) || !("PushManager" in window) || !("Notification" in window)) {
    if (isIos() && !standalone()) {
      return {
        ok: false,
        why: "On iPhone and iPad, first add edgewatch to the home screen (Share → Add to Home Screen), then open it from there and enable notifications.",
      };
    }
    return { ok: false, why: "This browser cannot receive push notifications." };
  }
  if (Notification.permission === "denied") {
    return { ok: false, why: "Notifications are blocked for this site; allow them in the browser's site settings, then reload." };
  }
  return { ok: true };
}

async function registration() {
  const existing = await navigator.serviceWorker.getRegistration("/");
  if (existing) return existing;
  await navigator.serviceWorker.register("/sw.js", { scope: "/" });
  return navigator.serviceWorker.ready;
}

/** The current subscription of this browser, or null. */
export async function currentSubscription() {
  if (!pushSupport().ok) return null;
  const reg = await navigator.serviceWorker.getRegistration("/");
  return reg ? reg.pushManager.getSubscription() : null;
}

/** Ask permission (call from a tap), subscribe and register with the aggregator. */
export async function enablePush() {
  const permission = await Notification.requestPermission();
  if (permission !== "granted") {
    throw new Error("Notifications were not allowed; allow them for this site to get alerts on this device.");
  }
  const key = await get("/api/v1/push/key", null, { quiet: true });
  if (!key.public_key) throw new Error("The aggregator has no Web Push key; check its alerts.push setting.");
  const serverKey = b64urlToBytes(key.public_key);
  const reg = await registration();
  let sub = await reg.pushManager.getSubscription();
  if (sub && !sameKey(sub.options && sub.options.applicationServerKey, serverKey)) {
    await sub.unsubscribe(); // made with an older key of the aggregator
    sub = null;
  }
  if (!sub) sub = await reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: serverKey });
  await post("/api/v1/push/subscriptions", sub.toJSON(), { quiet: true });
  return sub;
}

/** Stop pushing to this browser: at the aggregator, then in the browser. */
export async function disablePush() {
  const sub = await currentSubscription();
  if (!sub) return;
  try {
    await del("/api/v1/push/subscriptions", { endpoint: sub.endpoint }, { quiet: true });
  } catch (exc) {
    if (exc.status !== 404) throw exc; // the aggregator had forgotten it already
  }
  await sub.unsubscribe();
}
