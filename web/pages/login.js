// Sign in: user name and password; the answer carries the role and the CSRF token, the cookie
// carries the session. Afterwards the page the user was sent away from opens again.

import { ApiError, api, returnRoute } from "../api.js";
import { busy, html, setHtml } from "../dom.js";
import { session, setSession, signedIn } from "../session.js";

export async function mount(root, ctx) {
  document.title = "Sign in · edgewatch";
  await session.ready;
  if (signedIn()) {
    location.replace(returnRoute()); // already signed in (a back button, a bookmark)
    return;
  }
  setHtml(
    root,
    html`<section class="login">
      <h1><img src="/icons/icon.svg" alt="" width="40" height="40"> edgewatch</h1>
      <form class="card stack" id="login-form" novalidate>
        <h2>Sign in</h2>
        <label for="login-user">User name</label>
        <input id="login-user" name="username" autocomplete="username" autocapitalize="none"
          spellcheck="false" required>
        <label for="login-password">Password</label>
        <input id="login-password" name="password" type="password" autocomplete="current-password" required>
        <p class="form-error" id="login-error" role="alert" hidden></p>
        <button type="submit" class="primary">Sign in</button>
      </form>
    </section>`,
  );
  const form = root.querySelector("#login-form");
  const error = root.querySelector("#login-error");
  const user = root.querySelector("#login-user");
  user.focus();

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    error.hidden = true;
    const username = form.username.value.trim();
    const password = form.password.value;
    if (!username || !password) {
      error.textContent = "Enter your user name and password.";
      error.hidden = false;
      return;
    }
    try {
      const me = await busy(form, () =>
        api("/api/v1/login", {
          method: "POST",
          body: { username, password },
          quiet: true,
          noLogin: true,
          signal: ctx.signal,
        }),
      );
      setSession(me);
      location.hash = returnRoute();
    } catch (exc) {
      if (exc.name === "AbortError") return;
      error.textContent = exc instanceof ApiError ? exc.message : "Signing in failed; try again.";
      error.hidden = false;
      form.password.select();
    }
  });
  ctx.ready();
}
