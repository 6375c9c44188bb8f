// The connect modal: tab 1 the live QR (re-rendered on every `qr` frame, with a countdown), tab 2 a
// pairing code for a phone number. It closes itself when the session's `status` frame says `connected`.
import { api, sessionPath } from "./api.js";
import { announce, h, id } from "./dom.js";
import { openModal } from "./modal.js";
import { formatPhone, phoneField } from "./phone.js";

function tabs(items, first = 0) {
  const list = h("div", { class: "tabs", role: "tablist", "aria-label": "How to link" });
  const panels = [];
  const buttons = items.map((item, index) => {
    const tabId = id("tab");
    const panelId = id("panel");
    const panel = h("div", { id: panelId, role: "tabpanel", "aria-labelledby": tabId, class: "tabpanel", hidden: index !== first }, item.panel);
    panels.push(panel);
    return h("button", {
      id: tabId, type: "button", role: "tab", "aria-controls": panelId,
      "aria-selected": index === first ? "true" : "false", tabindex: index === first ? "0" : "-1",
    }, item.label);
  });
  function select(index) {
    buttons.forEach((button, i) => {
      button.setAttribute("aria-selected", i === index ? "true" : "false");
      button.tabIndex = i === index ? 0 : -1;
      panels[i].hidden = i !== index;
    });
    buttons[index].focus();
    items[index].onSelect?.();
  }
  buttons.forEach((button, index) => {
    button.addEventListener("click", () => select(index));
    button.addEventListener("keydown", (event) => {
      if (event.key === "ArrowRight" || event.key === "ArrowLeft") {
        event.preventDefault();
        const step = event.key === "ArrowRight" ? 1 : -1;
        select((index + step + buttons.length) % buttons.length);
      }
    });
  });
  list.append(...buttons);
  return h("div", {}, list, ...panels);
}

// Reason `phone_in_use`: the scan was refused (409) and the session starts a new round by itself.
export const PHONE_IN_USE =
  "This phone is already linked to another number in this bridge. Unlink it there first, then scan again.";

export function groupCode(code) {
  return code.length === 8 ? `${code.slice(0, 4)}-${code.slice(4)}` : code;
}

export function connectModal(session, live, { onConnected, onClose, linked = [], keep = null } = {}) {
  const sessionId = session.id;
  let expiresAt = null;
  let roundsLeft = null; // pairing rounds after this one's codes, from the `qr` frames
  let objectUrl = null;
  let fetchSeq = 0;
  let ended = false;

  const qrImg = h("img", { class: "qr", alt: "QR code to scan with WhatsApp on your phone", width: 264, height: 264, hidden: true });
  const qrWait = h("p", { class: "qr-wait" }, "Preparing a QR code…");
  const countdown = h("p", { class: "countdown", "aria-live": "off" });
  const taken = h("p", { class: "error", role: "alert" });
  const retryText = h("p", {}, "The QR codes expired before one was scanned.");
  const retryBox = h("div", { class: "retry", hidden: true, role: "alert" }, retryText);
  const retryButton = h("button", { type: "button", class: "primary" }, "Try again");
  const retryError = h("p", { class: "error", role: "alert" });
  retryBox.append(retryButton, retryError);
  // The phone this slot was last linked with: scanning with it keeps the chats, another replaces them.
  const keepNote = keep
    ? h("p", { class: "keep", id: id("keep") },
      `Scan with ${formatPhone(keep)} to keep this number's chats. `,
      h("strong", {}, `Another phone replaces ${formatPhone(keep)} here: its chats are deleted.`))
    : null;
  const qrPanel = h(
    "div", { class: "qr-panel" },
    taken,
    h("div", { class: "qr-frame" }, qrImg, qrWait),
    countdown,
    retryBox,
    h("ol", { class: "steps" },
      h("li", {}, "Open WhatsApp on your phone."),
      h("li", {}, "Tap Settings (or ⋮) → Linked devices → Link a device."),
      h("li", {}, "Point the phone at this code."),
    ),
  );

  // Prefilled: the phone this slot was last linked with, else the number given at onboarding.
  const phone = phoneField({ label: "Phone number of the WhatsApp account", initial: keep });
  if (!keep) {
    api("/users/me")
      .then((me) => { if (me.whatsappPhone && !phone.input.value) phone.set(me.whatsappPhone); })
      .catch(() => {});
  }
  const codeButton = h("button", { type: "submit", class: "primary" }, "Get pairing code");
  const codeOut = h("div", { class: "pairing", hidden: true });
  const codeError = h("p", { class: "error", role: "alert" });
  const pairForm = h("form", { class: "pair-form", novalidate: true }, phone.el, codeButton, codeError, codeOut);
  pairForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const problem = phone.validate();
    phone.error(problem);
    codeError.textContent = "";
    if (problem) return phone.focus();
    const taken = linked.find((other) => other.phone === phone.value());
    if (taken) {
      // The API would refuse the pairing with 409 phone_already_paired: say so before asking.
      phone.error(`${formatPhone(taken.phone)} is already linked in slot ${taken.slot}. Disconnect it there first.`);
      return phone.focus();
    }
    codeButton.disabled = true;
    try {
      const { code } = await api(sessionPath(sessionId, "/pairing-code"), { method: "POST", json: { phone: phone.value() } });
      const grouped = groupCode(code);
      codeOut.replaceChildren(
        h("p", {}, `Enter this code on the phone with ${formatPhone(phone.value())}:`),
        h("p", { class: "code", "aria-label": `Pairing code ${code.split("").join(" ")}` }, grouped),
        h("ol", { class: "steps" },
          h("li", {}, "Open WhatsApp → Settings → Linked devices → Link a device."),
          h("li", {}, "Tap “Link with phone number instead”."),
          h("li", {}, "Type the 8 characters above."),
        ),
      );
      codeOut.hidden = false;
      announce(`Pairing code ${grouped}`);
    } catch (err) {
      codeError.textContent = err.message;
    } finally {
      codeButton.disabled = false;
    }
  });

  // A phone cannot scan its own screen: there the pairing code comes first.
  const onPhone = matchMedia("(max-width: 700px)").matches;
  // Above both tabs: which phone keeps the chats matters however the phone links.
  const content = h("div", { class: "dialog-body" },
    keepNote,
    tabs([
      { label: "QR code", panel: qrPanel },
      { label: "Phone number", panel: pairForm, onSelect: () => phone.focus() },
    ], onPhone ? 1 : 0),
  );

  const timer = setInterval(tick, 500);
  const modal = openModal({
    title: `Link WhatsApp to slot ${session.slot}`,
    content,
    className: "connect",
    onClose: (why) => {
      clearInterval(timer);
      unsubscribe();
      if (objectUrl) URL.revokeObjectURL(objectUrl);
      onClose?.(why);
    },
  });
  modal.dialog.dataset.sessionId = sessionId;

  function tick() {
    if (ended || expiresAt === null) {
      countdown.textContent = "";
      return;
    }
    const left = Math.ceil((expiresAt - Date.now()) / 1000);
    // The last code stays on screen until the next one replaces it: no blank square in between.
    qrImg.classList.toggle("stale", left <= 0);
    const rounds = roundsLeft === null ? ""
      : roundsLeft === 0 ? " This is the last round of codes."
        : ` ${roundsLeft} more round${roundsLeft === 1 ? "" : "s"} of codes after this one.`;
    countdown.textContent = (left > 0 ? `This code changes in ${left} s.` : "A new code is on its way…") + rounds;
  }

  async function showQr(expiry) {
    const seq = ++fetchSeq;
    let res;
    try {
      res = await api(sessionPath(sessionId, "/qr.svg"), { raw: true });
    } catch {
      return; // between codes: the next `qr` frame brings one
    }
    const blob = await res.blob();
    if (seq !== fetchSeq || modal.closed) return;
    if (objectUrl) URL.revokeObjectURL(objectUrl);
    objectUrl = URL.createObjectURL(blob);
    qrImg.src = objectUrl;
    qrImg.hidden = false;
    qrWait.hidden = true;
    const header = res.headers.get("X-QR-Expires-At");
    expiresAt = Date.parse(expiry || header) || null;
    tick();
  }

  // Kept on screen while the next round's codes show: the user reads it, then scans with another phone.
  function phoneInUse() {
    taken.textContent = PHONE_IN_USE;
    fetchSeq += 1; // a code still loading belongs to the round that ended
    expiresAt = null;
    qrImg.hidden = true;
    qrWait.hidden = false;
    qrWait.textContent = "Preparing a new QR code…";
    tick();
  }

  function endRound(text = "The QR codes expired before one was scanned.") {
    retryText.textContent = text;
    ended = true;
    fetchSeq += 1;
    qrImg.hidden = true;
    qrWait.hidden = true;
    retryBox.hidden = false;
    countdown.textContent = "";
    retryButton.focus();
  }

  retryButton.addEventListener("click", async () => {
    retryButton.disabled = true;
    retryError.textContent = "";
    try {
      await api(sessionPath(sessionId, "/reconnect"), { method: "POST" });
      ended = false;
      retryBox.hidden = true;
      qrWait.hidden = false;
      qrWait.textContent = "Preparing a new QR code…";
    } catch (err) {
      retryError.textContent = err.message;
    } finally {
      retryButton.disabled = false;
    }
  });

  const unsubscribe = live.on((frame) => {
    if (frame.sessionId !== sessionId) return;
    if (frame.type === "qr" && !ended) {
      if (typeof frame.roundsLeft === "number") roundsLeft = frame.roundsLeft;
      showQr(frame.expiresAt);
    } else if (frame.type === "status") {
      if (frame.status === "connected") {
        announce(`Connected ${formatPhone(frame.phone)}`);
        modal.close("connected");
        onConnected?.(frame);
      } else if (frame.status === "disconnected" && frame.reason === "qr_timeout") {
        endRound();
      } else if (frame.reason === "phone_in_use" && !ended) {
        phoneInUse();
      }
    }
  });

  // What is showing already (the socket's on-open frames may have come before the modal opened).
  if (session.status === "disconnected" && session.reason === "qr_timeout") endRound();
  else {
    api(sessionPath(sessionId, "/status"))
      .then((now) => {
        if (now.status === "connected") {
          modal.close("connected");
          onConnected?.(now);
        } else if (now.qr && fetchSeq === 0) showQr(null);
        else if (now.reason === "phone_in_use") phoneInUse();
        // A new number is `disconnected` without a reason until its process starts the pairing.
        else if (now.status === "disconnected" && now.reason && !now.qr && fetchSeq === 0) {
          endRound(now.reason === "qr_timeout" ? undefined : "No pairing is running for this slot.");
        }
      })
      .catch(() => {});
  }
  return modal;
}
