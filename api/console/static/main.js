// The console's entry: asks once for a key (signin.js; kept in sessionStorage only), then shows
// Messages, Settings or Onboarding by the URL's hash, with one live-events connection shared by all.
import { api, clearCredentials, credentials } from "./api.js";
import { Live } from "./live.js";
import { renderMessages } from "./messages.js";
import { renderOnboarding, SKIPPED } from "./onboarding.js";
import { renderSettings } from "./settings.js";
import { renderSignIn, showWho } from "./signin.js";

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
  showWho();
  renderSignIn(main, start);
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

if (credentials()) {
  showWho();
  start();
} else signIn();
