// Signing in: a user's own key (the user comes from the server, GET /me), or the admin key and the user
// to act as. Whoever is signed in is named in the header.
import { api, clearCredentials, credentials, saveCredentials } from "./api.js";
import { h, id } from "./dom.js";

// The header's "who": the user, and whether the admin key acts for them.
export function showWho() {
  const who = document.getElementById("who");
  const creds = credentials();
  who.hidden = !creds;
  who.textContent = creds ? (creds.admin ? `${creds.user} (admin key)` : creds.user) : "";
}

// The sign-in form in `main`; `done()` once a key was accepted.
export function renderSignIn(main, done) {
  const keyId = id("key");
  const userId = id("user");
  const error = h("p", { class: "error", role: "alert" });
  const key = h("input", { id: keyId, type: "password", autocomplete: "off", required: true });
  const hintId = id("user-hint");
  const user = h("input", { id: userId, type: "text", autocomplete: "username", autocapitalize: "none", spellcheck: "false", "aria-describedby": hintId });
  const form = h("form", { class: "signin", novalidate: true },
    h("h1", {}, "Open the console"),
    h("p", { class: "muted" }, "Your API key. It stays in this tab only and is sent as a header."),
    h("div", { class: "field" }, h("label", { for: keyId }, "API key"), key),
    h("div", { class: "field" },
      h("label", { for: userId }, "User id"),
      user,
      h("p", { class: "muted hint", id: hintId },
        "Only with the bridge's admin key: the user whose numbers to manage. ",
        "User ids are case-sensitive: “Ana” and “ana” are two users."),
    ),
    h("button", { type: "submit", class: "primary" }, "Open"),
    error,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    if (!key.value.trim()) {
      error.textContent = "Enter your API key.";
      return;
    }
    saveCredentials(key.value.trim(), user.value.trim(), false);
    let me;
    try {
      me = await api("/me");
    } catch (err) {
      clearCredentials();
      error.textContent = err.message;
      key.focus();
      return;
    }
    if (!me.userId) {
      clearCredentials();
      error.textContent = "This is the admin key: enter the user id to act as.";
      user.focus();
      return;
    }
    saveCredentials(key.value.trim(), me.userId, me.admin);
    showWho();
    done();
  });
  main.replaceChildren(form);
  key.focus();
}
