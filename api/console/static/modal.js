// An accessible dialog: labelled, focus kept inside (Tab wraps), Escape closes, focus returns to the opener.
import { h, id } from "./dom.js";

const FOCUSABLE = 'a[href], button:not([disabled]), input:not([disabled]), select:not([disabled]), textarea:not([disabled]), [tabindex]:not([tabindex="-1"])';

export function openModal({ title, content, onClose, className = "" }) {
  const opener = document.activeElement;
  // A card redrawn while the dialog was open has a new button in the opener's place: focus that one.
  const slot = opener && opener.closest ? opener.closest("[data-slot]") : null;
  const stand_in = slot ? `[data-slot="${slot.dataset.slot}"] .actions button` : null;
  const titleId = id("dialog-title");
  const closeButton = h("button", { type: "button", class: "icon close", "aria-label": "Close" }, "×");
  const dialog = h(
    "div",
    { class: `dialog ${className}`, role: "dialog", "aria-modal": "true", "aria-labelledby": titleId },
    h("div", { class: "dialog-head" }, h("h2", { id: titleId }, title), closeButton),
    content,
  );
  const backdrop = h("div", { class: "backdrop" }, dialog);
  let closed = false;

  function close(why = "closed") {
    if (closed) return;
    closed = true;
    document.removeEventListener("keydown", onKey, true);
    backdrop.remove();
    if (opener && opener.isConnected) opener.focus();
    else if (stand_in && document.querySelector(stand_in)) document.querySelector(stand_in).focus();
    if (onClose) onClose(why);
  }

  function onKey(event) {
    if (event.key === "Escape") {
      event.preventDefault();
      close("escape");
    } else if (event.key === "Tab") {
      const items = [...dialog.querySelectorAll(FOCUSABLE)].filter((el) => el.tabIndex >= 0 && el.offsetParent !== null);
      if (!items.length) return;
      const first = items[0];
      const last = items[items.length - 1];
      if (event.shiftKey && document.activeElement === first) {
        event.preventDefault();
        last.focus();
      } else if (!event.shiftKey && document.activeElement === last) {
        event.preventDefault();
        first.focus();
      } else if (!dialog.contains(document.activeElement)) {
        event.preventDefault();
        first.focus();
      }
    }
  }

  closeButton.addEventListener("click", () => close("button"));
  backdrop.addEventListener("mousedown", (event) => {
    if (event.target === backdrop) close("backdrop");
  });
  document.addEventListener("keydown", onKey, true);
  document.body.append(backdrop);
  const first = dialog.querySelector("[autofocus]") || closeButton;
  first.focus();
  return { dialog, close, get closed() { return closed; } };
}

// "Are you sure?" as a dialog; resolves true when confirmed.
export function confirmDialog({ title, text, confirm, danger = true }) {
  return new Promise((resolve) => {
    let answer = false;
    const yes = h("button", { type: "button", class: danger ? "danger" : "primary" }, confirm);
    const no = h("button", { type: "button", autofocus: true }, "Cancel");
    const modal = openModal({
      title,
      content: h("div", { class: "dialog-body" }, h("p", {}, text), h("div", { class: "actions" }, no, yes)),
      onClose: () => resolve(answer),
    });
    yes.addEventListener("click", () => {
      answer = true;
      modal.close("confirmed");
    });
    no.addEventListener("click", () => modal.close("cancelled"));
  });
}
