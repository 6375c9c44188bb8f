// Live events: one WebSocket (token from POST /ws-token), resumed from its last cursor after a drop,
// reconnected with capped, jittered backoff. While it is down, or Redis is, session status is polled.
// The token is renewed before it expires by opening the next socket from the last cursor and closing
// the old one: nobody sees or hears it. A refused key (401) ends the session (`unauthorized` frame);
// while the bridge does not answer at all (`bridge` frame, `up: false`) /health is asked every
// BRIDGE_PROBE_MS and the socket reconnects as soon as it answers ("Retry now" does it at once).
import { ApiError, api, sessionPath } from "./api.js";

const BACKOFF_MS = [1000, 2000, 4000, 8000, 15000, 30000];
const POLL_MS = 3000;
const HEALTH_MS = 5000;
const SETTLE_MS = 2000;
const BRIDGE_PROBE_MS = 2000;
// Renew this long before the token expires (at most a fifth of its lifetime).
const RENEW_BEFORE_MS = 30000;
const REPLAYED = new Set(["message", "message_update", "chat", "session_deleted"]);

function cursorKey(cursor) {
  const [ms, n] = String(cursor).split("-").map(Number);
  return [ms || 0, n || 0];
}

export function cursorAfter(a, b) {
  const [x, y] = [cursorKey(a), cursorKey(b)];
  return x[0] > y[0] || (x[0] === y[0] && x[1] > y[1]);
}

export class Live {
  constructor(statusEl) {
    this.statusEl = statusEl;
    this.listeners = new Set();
    this.cursor = null;
    this.attempt = 0;
    this.socket = null;
    this.stopped = false;
    this.redisDown = false;
    this.pollTimer = null;
    this.healthTimer = null;
    this.retryTimer = null;
    this.countdownTimer = null;
    this.renewTimer = null;
    this.probeTimer = null;
    this.bridgeUp = true;
    this.connecting = false;
  }

  on(listener) {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  get open() {
    return this.socket !== null && this.socket.readyState === WebSocket.OPEN;
  }

  start() {
    this.stopped = false;
    this.connect();
    this.checkHealth();
    this.healthTimer = setInterval(() => this.checkHealth(), HEALTH_MS);
  }

  stop() {
    this.stopped = true;
    clearInterval(this.healthTimer);
    clearTimeout(this.retryTimer);
    clearTimeout(this.renewTimer);
    clearInterval(this.countdownTimer);
    clearInterval(this.probeTimer);
    this.probeTimer = null;
    this.stopPolling();
    if (this.socket) this.socket.close(1000);
    this.socket = null;
    this.say("");
  }

  // "Retry now": reconnect at once instead of waiting out the backoff.
  retryNow() {
    if (this.stopped) return;
    this.attempt = 0;
    clearTimeout(this.retryTimer);
    clearInterval(this.countdownTimer);
    this.checkHealth();
    if (!this.open) this.connect();
  }

  // Whether the bridge answers at all; `bridge` frames tell the screens when that changes.
  setBridge(up, reconnect = true) {
    if (up === this.bridgeUp) return;
    this.bridgeUp = up;
    if (!up && !this.probeTimer) {
      this.probeTimer = setInterval(() => this.checkHealth(), BRIDGE_PROBE_MS);
    } else if (up) {
      clearInterval(this.probeTimer);
      this.probeTimer = null;
      if (reconnect && !this.open) this.retryNow();
    }
    this.emit({ type: "bridge", up });
  }

  unauthorized() {
    this.stop();
    this.emit({ type: "unauthorized" });
  }

  async token() {
    try {
      const got = await api("/ws-token", { method: "POST" });
      this.setBridge(true, false);
      return got;
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) this.unauthorized();
      else if (err instanceof ApiError && err.status === 0) this.setBridge(false);
      return null;
    }
  }

  scheduleRenewal(expiresAt) {
    clearTimeout(this.renewTimer);
    const left = Date.parse(expiresAt) - Date.now();
    if (!(left > 0)) return;
    const before = Math.min(RENEW_BEFORE_MS, left / 5);
    this.renewTimer = setTimeout(() => this.connect({ renewing: true }), Math.max(1000, left - before));
  }

  emit(frame) {
    for (const listener of [...this.listeners]) {
      try {
        listener(frame);
      } catch (err) {
        console.warn("live listener failed", err);
      }
    }
  }

  say(text, state = "") {
    this.statusEl.textContent = text;
    this.statusEl.dataset.state = state;
  }

  async connect({ renewing = false } = {}) {
    if (this.stopped || (!renewing && (this.connecting || this.open))) return;
    if (!renewing) this.say("Connecting to live updates…", "connecting");
    if (!renewing) this.connecting = true;
    const got = await this.token();
    if (!renewing) this.connecting = false;
    if (!got) {
      if (!this.stopped && !renewing) this.retry();
      else if (renewing) this.renewTimer = setTimeout(() => this.connect({ renewing: true }), 2000);
      return;
    }
    if (this.stopped) return;
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const query = new URLSearchParams({ token: got.token });
    if (this.cursor) query.set("cursor", this.cursor);
    const socket = new WebSocket(`${scheme}//${location.host}/ws?${query}`);
    const previous = renewing ? this.socket : null;
    if (!renewing) this.socket = socket;
    // Up once it has delivered a frame or stayed open a moment: a socket that opens and closes at
    // once (refused, overloaded) keeps backing off, and status keeps being polled meanwhile.
    let settled = false;
    const settle = () => {
      if (settled || this.socket !== socket || socket.readyState !== WebSocket.OPEN) return;
      settled = true;
      this.attempt = 0;
      if (!this.redisDown) this.stopPolling();
      this.say(this.redisDown ? this.pollingText() : "Live", this.redisDown ? "polling" : "live");
    };
    socket.addEventListener("open", () => {
      this.scheduleRenewal(got.expiresAt);
      if (renewing && previous && previous === this.socket && previous.readyState === WebSocket.OPEN) {
        // The new socket takes over; the old one is closed before its token runs out.
        this.socket = socket;
        settled = true;
        previous.close(1000);
        return;
      }
      if (renewing) {
        socket.close(1000); // the socket it was to replace is gone: a reconnect is under way instead
        return;
      }
      setTimeout(settle, SETTLE_MS);
    });
    socket.addEventListener("message", (event) => {
      if (this.socket !== socket) return; // the socket being replaced (or the replacement not yet)
      settle();
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      if (frame.cursor && this.cursor && REPLAYED.has(frame.type) && !cursorAfter(frame.cursor, this.cursor)) return;
      if (frame.cursor && (!this.cursor || cursorAfter(frame.cursor, this.cursor))) this.cursor = frame.cursor;
      this.emit(frame);
    });
    socket.addEventListener("close", () => {
      if (this.socket !== socket) return;
      this.socket = null;
      clearTimeout(this.renewTimer); // the next socket gets a token of its own
      this.retry();
    });
  }

  retry() {
    if (this.stopped) return;
    const base = BACKOFF_MS[Math.min(this.attempt, BACKOFF_MS.length - 1)];
    const delay = Math.round(base * (0.8 + Math.random() * 0.4));
    this.attempt += 1;
    const until = Date.now() + delay;
    // Said once: the seconds left are shown without being announced again every second.
    this.say(this.bridgeUp ? "Live updates lost. Reconnecting…" : "The bridge is not answering. Reconnecting…", "reconnecting");
    const seconds = document.createElement("span");
    seconds.setAttribute("aria-hidden", "true");
    const retry = document.createElement("button");
    retry.type = "button";
    retry.className = "link";
    retry.textContent = "Retry now";
    retry.addEventListener("click", () => this.retryNow());
    this.statusEl.append(" ", seconds, " ", retry);
    const tell = () => {
      seconds.textContent = `(${Math.max(0, Math.ceil((until - Date.now()) / 1000))} s)`;
    };
    tell();
    clearInterval(this.countdownTimer);
    this.countdownTimer = setInterval(tell, 1000);
    this.startPolling();
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => {
      clearInterval(this.countdownTimer);
      this.connect();
    }, delay);
  }

  pollingText() {
    return `Live updates are paused (Redis is down); checking status every ${POLL_MS / 1000} s.`;
  }

  async checkHealth() {
    try {
      const res = await fetch("/health", { cache: "no-store" });
      this.setBridge(true);
      const body = await res.json();
      const down = body.components && body.components.redis === "error";
      if (down !== this.redisDown) {
        this.redisDown = down;
        if (down) {
          this.startPolling();
          this.say(this.pollingText(), "polling");
        } else if (this.open) {
          this.stopPolling();
          this.say("Live", "live");
          this.emit({ type: "resync" });
        }
      }
    } catch {
      this.setBridge(false);
    }
  }

  startPolling() {
    if (this.pollTimer) return;
    this.pollTimer = setInterval(() => this.poll(), POLL_MS);
  }

  stopPolling() {
    clearInterval(this.pollTimer);
    this.pollTimer = null;
  }

  // The spec's fallback: each session's status (and the QR it shows) from GET /sessions/{id}/status.
  async poll() {
    let sessions;
    try {
      sessions = await api("/sessions");
    } catch {
      return;
    }
    for (const session of sessions) {
      try {
        const now = await api(sessionPath(session.id, "/status"));
        const { status, reason, phone, displayName } = now;
        this.emit({ type: "status", sessionId: now.id, status, reason, phone, displayName, polled: true });
        if (now.qr) this.emit({ type: "qr", sessionId: now.id, qr: now.qr, expiresAt: null, polled: true });
      } catch {
        /* next round */
      }
    }
  }
}
