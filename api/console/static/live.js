// Live events: one WebSocket (token from POST /ws-token), resumed from its last cursor after a drop,
// reconnected with capped, jittered backoff. While it is down, or Redis is, session status is polled.
import { api, sessionPath } from "./api.js";

const BACKOFF_MS = [1000, 2000, 4000, 8000, 15000, 30000];
const POLL_MS = 3000;
const HEALTH_MS = 5000;
const SETTLE_MS = 2000;

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
    clearInterval(this.countdownTimer);
    this.stopPolling();
    if (this.socket) this.socket.close(1000);
    this.socket = null;
    this.say("");
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

  async connect() {
    if (this.stopped) return;
    this.say("Connecting to live updates…", "connecting");
    let token;
    try {
      token = (await api("/ws-token", { method: "POST" })).token;
    } catch {
      this.retry();
      return;
    }
    if (this.stopped) return;
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const query = new URLSearchParams({ token });
    if (this.cursor) query.set("cursor", this.cursor);
    const socket = new WebSocket(`${scheme}//${location.host}/ws?${query}`);
    this.socket = socket;
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
    socket.addEventListener("open", () => setTimeout(settle, SETTLE_MS));
    socket.addEventListener("message", (event) => {
      settle();
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      if (frame.cursor) this.cursor = frame.cursor;
      this.emit(frame);
    });
    socket.addEventListener("close", () => {
      if (this.socket !== socket) return;
      this.socket = null;
      this.retry();
    });
  }

  retry() {
    if (this.stopped) return;
    const base = BACKOFF_MS[Math.min(this.attempt, BACKOFF_MS.length - 1)];
    const delay = Math.round(base * (0.8 + Math.random() * 0.4));
    this.attempt += 1;
    const until = Date.now() + delay;
    const tell = () => {
      const left = Math.max(0, Math.ceil((until - Date.now()) / 1000));
      this.say(`Live updates lost. Reconnecting in ${left} s; status is checked every ${POLL_MS / 1000} s meanwhile.`, "reconnecting");
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
      /* the socket's own retry says that the bridge is gone */
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
