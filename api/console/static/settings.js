// Settings → Integrations → WhatsApp Inbox: one card per slot, connect / reconnect / disconnect.
import { api, sessionPath } from "./api.js";
import { PHONE_IN_USE, connectModal } from "./connect.js";
import { announce, formatTime, h } from "./dom.js";
import { confirmDialog } from "./modal.js";
import { formatPhone } from "./phone.js";
import { webhooksCard } from "./webhooks.js";

export const SLOTS = [1, 2, 3];

const REASONS = {
  logged_out: "The phone unlinked this device. Link it again to keep receiving messages.",
  qr_timeout: "The QR code expired before it was scanned.",
  network: "The connection dropped; the bridge reconnects by itself.",
  replaced: "Another client took over this number.",
  banned: "WhatsApp has banned this number.",
  outdated: "WhatsApp says this bridge's version is outdated.",
  error: "An error stopped this number.",
  phone_in_use: PHONE_IN_USE,
  proxy_unreachable: "This number's proxy cannot be reached. Check its address, or set another proxy.",
  proxy_auth_failed: "This number's proxy refused its user name or password. Set the proxy again.",
  proxy_refused: "This number's proxy would not connect to WhatsApp. Set another proxy.",
};

const STATUS_WORDS = {
  connected: "Connected",
  connecting: "Connecting…",
  qr_ready: "Waiting for the phone to scan",
  disconnected: "Not connected",
};

function initials(name, phone) {
  const source = (name || "").trim();
  if (source) return source.split(/\s+/).slice(0, 2).map((w) => w[0].toUpperCase()).join("");
  return phone ? phone.slice(-2) : "?";
}

export function avatar(session) {
  if (session.profilePicUrl) {
    return h("img", { class: "avatar", src: session.profilePicUrl, alt: "", referrerpolicy: "no-referrer" });
  }
  return h("span", { class: "avatar", "aria-hidden": "true" }, initials(session.displayName, session.phone));
}

// Said on the card and in the connect modal of a number the phone unlinked (DESIGN.md: a slot
// belongs to its phone).
export function keepWords(phone) {
  return `Scan with ${formatPhone(phone)} to keep this number's chats. Another phone starts this slot afresh: ${formatPhone(phone)}'s chats are then deleted here.`;
}

// While the bridge does not answer: say so above the cards, with a way to try again at once.
function bridgeDown(live) {
  const retry = h("button", { type: "button", onclick: () => live.retryNow() }, "Retry now");
  const el = h("div", { class: "bridge-down", role: "alert", hidden: live.bridgeUp },
    h("p", {}, "The bridge is not answering. What is shown is as last seen; this page checks again every few seconds."),
    retry,
  );
  return { el, show: (yes) => { el.hidden = !yes; } };
}

export function renderSettings(main, { live }) {
  let sessions = [];
  let openModal = null;
  let reloadTimer = null;
  const fresh = new Map();
  const creating = new Set(); // slots whose POST /sessions is under way
  const cards = h("div", { class: "cards" });
  const note = h("p", { class: "note", id: "slots-note" });
  const pageError = h("p", { class: "error", role: "alert" });
  const down = bridgeDown(live);

  main.replaceChildren(
    down.el,
    h("nav", { class: "crumbs", "aria-label": "Breadcrumb" }, "Settings › Integrations › ", h("strong", {}, "WhatsApp Inbox")),
    h("h1", {}, "WhatsApp Inbox"),
    h("p", { class: "muted" }, "Link up to three WhatsApp numbers. Their chats arrive together in Messages."),
    pageError,
    cards,
    note,
    webhooksCard(),
  );

  async function load() {
    try {
      sessions = await api("/sessions");
      pageError.textContent = "";
    } catch (err) {
      pageError.textContent = err.message;
      return;
    }
    draw();
  }

  function scheduleReload() {
    clearTimeout(reloadTimer);
    reloadTimer = setTimeout(load, 250);
  }

  function draw() {
    // The list is as last stored; a `status` frame is fresher (e.g. `qr_ready` while pairing).
    const now = sessions.map((s) => ({ ...s, ...(fresh.get(s.id) || {}), bridgeDown: !live.bridgeUp }));
    const active = document.activeElement;
    const was = active && cards.contains(active) ? { slot: active.closest("[data-slot]").dataset.slot, text: active.textContent } : null;
    cards.replaceChildren(...SLOTS.map((slot) => card(slot, now.find((s) => s.slot === slot))));
    if (was) {
      // Redrawn under the keyboard: focus stays on the same control of the same card (or its first).
      const again = cards.querySelector(`[data-slot="${was.slot}"]`);
      const buttons = again ? [...again.querySelectorAll("button")] : [];
      (buttons.find((b) => b.textContent === was.text) || buttons[0])?.focus();
    }
    const full = sessions.length >= SLOTS.length;
    note.replaceChildren();
    if (full) {
      note.append(
        h("button", { type: "button", disabled: true, "aria-describedby": "slots-why" }, "Connect another number"),
        h("span", { id: "slots-why" }, " All 3 numbers are in use. Disconnect one to connect another."),
      );
    }
  }

  // A card's error outlives a redraw (a status frame can come just after the refusal it explains).
  const errors = new Map();
  function tell(slot, error, text) {
    errors.set(slot, text);
    error.textContent = text;
  }

  function card(slot, session) {
    const error = h("p", { class: "error", role: "alert" }, errors.get(slot) || "");
    const body = [];
    const actions = [];
    let state = "empty";
    if (!session) {
      body.push(h("p", { class: "muted" }, "No number linked."));
      // While the number's session is being created the button says so, through any redraw.
      const busy = creating.has(slot);
      actions.push(h("button", { type: "button", class: "primary", "aria-busy": busy ? "true" : "false", onclick: () => create(slot, error) },
        busy ? "Connecting…" : "Connect"));
    } else {
      state = session.status;
      const who = h("div", { class: "who" },
        avatar(session),
        h("div", {},
          h("p", { class: "name" }, session.displayName || (session.phone ? "WhatsApp" : "Not linked yet")),
          session.phone ? h("p", { class: "phone" }, formatPhone(session.phone)) : null,
        ),
      );
      if (session.bridgeDown) {
        body.push(who, h("p", { class: "status status-unknown" }, "Unknown: the bridge is not answering"));
      } else {
        body.push(who, h("p", { class: `status status-${session.status}` }, STATUS_WORDS[session.status] || session.status));
      }
      if (session.status === "connected") {
        if (session.lastSeen) body.push(h("p", { class: "muted small" }, `Last seen ${formatTime(session.lastSeen)}`));
        actions.push(h("button", { type: "button", class: "danger", onclick: () => disconnect(session, error) }, "Disconnect"));
      } else if (session.status === "disconnected") {
        if (session.reason) body.push(h("p", { class: "reason" }, REASONS[session.reason] || session.reason));
        if (session.phone) body.push(h("p", { class: "keep" }, keepWords(session.phone)));
        // Not paired and no reason: a pairing round may be starting; the modal shows it or offers a retry.
        const start = session.reason || session.phone ? () => reconnect(session, error) : () => showModal(session);
        actions.push(h("button", { type: "button", class: "primary", onclick: start }, session.phone ? "Reconnect" : "Connect"));
        actions.push(h("button", { type: "button", onclick: () => disconnect(session, error) }, "Remove"));
      } else {
        actions.push(h("button", { type: "button", class: "primary", onclick: () => showModal(session) }, "Show QR code"));
        actions.push(h("button", { type: "button", onclick: () => disconnect(session, error) }, "Cancel"));
      }
    }
    return h("article", { class: "card", dataset: { slot: String(slot), state }, "aria-label": `Slot ${slot}` },
      h("h2", {}, `Number ${slot}`),
      ...body,
      h("div", { class: "actions" }, ...actions),
      error,
    );
  }

  function showModal(session) {
    if (openModal && !openModal.closed) return;
    // Numbers that hold their phone now (an unlinked one only remembers it).
    const linked = sessions.filter((s) => s.id !== session.id && s.phone && !(s.status === "disconnected" && s.reason === "logged_out"));
    openModal = connectModal(session, live, {
      linked,
      keep: session.phone,
      onConnected: () => scheduleReload(),
      onClose: () => scheduleReload(),
    });
  }

  async function create(slot, error) {
    if (creating.has(slot)) return; // a second press while the first is under way
    tell(slot, error, "");
    creating.add(slot);
    draw();
    try {
      const session = await api("/sessions", { method: "POST", json: { slot } });
      sessions = [...sessions.filter((s) => s.slot !== slot), session];
      creating.delete(slot);
      draw();
      showModal(session);
    } catch (err) {
      creating.delete(slot);
      errors.set(slot, err.message);
      draw();
    }
  }

  async function reconnect(session, error) {
    tell(session.slot, error, "");
    try {
      await api(sessionPath(session.id, "/reconnect"), { method: "POST" });
      showModal({ ...session, status: "connecting", reason: null, qr: null });
    } catch (err) {
      tell(session.slot, error, err.message);
    }
  }

  async function disconnect(session, error) {
    const label = session.phone ? formatPhone(session.phone) : `slot ${session.slot}`;
    // A link still pending has nothing stored yet: it is stopped, not "disconnected".
    const pending = session.status !== "connected" && !session.phone;
    const sure = await confirmDialog(pending
      ? { title: `Stop linking slot ${session.slot}?`, text: "Nothing is stored for this slot yet; you can link it again later.", confirm: "Stop linking" }
      : {
        title: `Disconnect ${label}?`,
        text: "The phone unlinks this device, and the messages stored here for this number are deleted.",
        confirm: "Disconnect",
      });
    if (!sure) return;
    tell(session.slot, error, "");
    try {
      await api(sessionPath(session.id), { method: "DELETE" });
      announce(`Disconnected ${label}`);
      await load();
    } catch (err) {
      tell(session.slot, error, err.message);
    }
  }

  const unsubscribe = live.on((frame) => {
    if (frame.type === "status") {
      const { status, reason, phone, displayName } = frame;
      const known = { status, reason };
      if (phone) Object.assign(known, { phone, displayName });
      fresh.set(frame.sessionId, known);
      scheduleReload();
    } else if (frame.type === "resync") {
      fresh.clear();
      scheduleReload();
    } else if (frame.type === "session_deleted") {
      // Removed in another tab or client: the slot is free here too, at once.
      const gone = sessions.find((s) => s.id === frame.sessionId);
      if (gone) {
        sessions = sessions.filter((s) => s.id !== frame.sessionId);
        fresh.delete(frame.sessionId);
        if (openModal && !openModal.closed && openModal.dialog.dataset.sessionId === frame.sessionId) openModal.close("removed");
        announce(`${gone.phone ? formatPhone(gone.phone) : `Number ${gone.slot}`} was removed`);
        draw();
      }
    } else if (frame.type === "bridge") {
      down.show(!frame.up);
      draw();
      if (frame.up) scheduleReload();
    }
  });
  load();
  return () => {
    unsubscribe();
    clearTimeout(reloadTimer);
    if (openModal && !openModal.closed) openModal.close("navigate");
  };
}
