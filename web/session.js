// Who is signed in: user, role and the session's CSRF token (from /api/v1/me or the login answer).
// The role only decides what the UI shows; the server checks it on every request anyway.

const RANK = { viewer: 0, operator: 1, admin: 2 };
const listeners = new Set();

export const session = {
  user: null,
  role: null,
  csrf: null,
  /** Resolves once /api/v1/me has answered (signed in or not). Set by app.js. */
  ready: Promise.resolve(),
};

export function signedIn() {
  return session.user !== null;
}

/** True when the signed-in role is at least `role` (viewer < operator < admin). */
export function can(role) {
  return session.role !== null && (RANK[session.role] ?? -1) >= RANK[role];
}

export function setSession(me) {
  session.user = me ? me.user : null;
  session.role = me ? me.role : null;
  session.csrf = me ? me.csrf : null;
  for (const fn of listeners) fn(session);
}

export function onSession(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}
