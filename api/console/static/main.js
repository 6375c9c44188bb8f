// The console's entry: asks once for the API key and user id (kept in sessionStorage only), then shows
// Messages, Settings or Onboarding by the URL's hash, with one live-events connection shared by all.
import { api, clearCredentials, credentials, saveCredentials } from "./api.js";
import { h, id } from "./dom.js";
import { Live } from "./live.js";
import { renderMessages } from "./messages.js";
import { renderOnboarding, SKIPPED } from "./onboarding.js";
import { renderSettings } from "./settings.js";

const SCREENS = { messages: renderMessages, settings: renderSettings, onboarding: renderOnboarding };
const main = document.getElementById("main");
const nav = document.getElementById("nav");
const signout = document.getElementById("signout");
const live = new Live(document.getElementById("live"));
let cleanup = null;

function go(screen) {
  location.hash = `#/${screen}`;
}

function current() {
  const name = location.hash.replace(/^#\//, "").split("/")[0];
  return SCREENS[name] ? name : null;
}

// What follows the screen's name in the URL (e.g. the open chat: #/messages/<session>/<chat>).
function route() {
  return location.hash.split("/").slice(2).map(decodeURIComponent);
}

function show() {
  if (!credentials()) return;
  const name = current();
  if (!name) return;
  if (cleanup) cleanup();
  for (const link of nav.querySelectorAll("a")) {
    link.setAttribute("aria-current", link.dataset.screen === name ? "page" : "false");
  }
  document.title = `${link_text(name)} · WhatsApp bridge console`;
  // Focus moves to the new screen when a control had it (a link, the sign-in button); on a fresh page
  // it stays at the top, so the first Tab reaches the skip link.
  const moved = document.activeElement && document.activeElement !== document.body;
  cleanup = SCREENS[name](main, { live, go, route: route() });
  if (moved) main.focus({ preventScroll: true });
}

function link_text(name) {
  return nav.querySelector(`a[data-screen="${name}"]`).textContent;
}

async function start() {
  nav.hidden = false;
  signout.hidden = false;
  live.start();
  if (current()) {
    show();
    return;
  }
  // First screen: onboarding until the number is given (or skipped), then the inbox or the settings.
  try {
    const [me, sessions] = await Promise.all([api("/users/me"), api("/sessions")]);
    if (!me.whatsappPhone && !sessionStorage.getItem(SKIPPED)) go("onboarding");
    else go(sessions.some((s) => s.status === "connected") ? "messages" : "settings");
  } catch {
    go("settings");
  }
}

function signIn() {
  nav.hidden = true;
  signout.hidden = true;
  const keyId = id("key");
  const userId = id("user");
  const error = h("p", { class: "error", role: "alert" });
  const key = h("input", { id: keyId, type: "password", autocomplete: "off", required: true });
  const user = h("input", { id: userId, type: "text", autocomplete: "username", required: true });
  const form = h("form", { class: "signin", novalidate: true },
    h("h1", {}, "Open the console"),
    h("p", { class: "muted" }, "The bridge's API key and the user whose numbers to manage. They stay in this tab only and are sent as headers."),
    h("div", { class: "field" }, h("label", { for: keyId }, "API key"), key),
    h("div", { class: "field" }, h("label", { for: userId }, "User id"), user),
    h("button", { type: "submit", class: "primary" }, "Open"),
    error,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    if (!key.value.trim() || !user.value.trim()) {
      error.textContent = "Enter both the API key and a user id.";
      return;
    }
    saveCredentials(key.value.trim(), user.value.trim());
    try {
      await api("/users/me");
    } catch (err) {
      clearCredentials();
      error.textContent = err.message;
      key.focus();
      return;
    }
    start();
  });
  main.replaceChildren(form);
  key.focus();
}

signout.addEventListener("click", () => {
  if (cleanup) cleanup();
  cleanup = null;
  live.stop();
  clearCredentials();
  sessionStorage.removeItem(SKIPPED);
  history.replaceState(null, "", location.pathname);
  signIn();
});
window.addEventListener("hashchange", show);
// The skip link moves focus without touching the URL (the hash names the screen and the open chat).
document.querySelector(".skip").addEventListener("click", (event) => {
  event.preventDefault();
  main.focus();
});
// A refused key (wrong, or rotated since): sign out and say why, instead of retrying for ever.
live.on((frame) => {
  if (frame.type !== "unauthorized" || !credentials()) return;
  signout.click();
  const error = main.querySelector(".signin .error");
  if (error) error.textContent = "The API key was refused: it is wrong or was changed. Enter the current key.";
});

if (credentials()) start();
else signIn();
