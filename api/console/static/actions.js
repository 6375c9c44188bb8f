// A message's action menu (the ⌄ on its bubble): react, reply (quoted), edit your own text within
// WhatsApp's 15 minutes, delete your own for everyone. A menu in the ARIA sense: focus goes to its first
// item, arrows move, Escape or Tab closes it and focus goes back to the button that opened it.
import { api, sessionPath } from "./api.js";
import { announce, h } from "./dom.js";
import { confirmDialog, openModal } from "./modal.js";

export const EMOJIS = ["👍", "❤️", "😂", "😮", "😢", "🙏"];
const EDIT_WINDOW_MS = 15 * 60 * 1000;

export function canEdit(message, now = Date.now()) {
  return message.fromMe && message.type === "text" && now - Date.parse(message.timestamp) < EDIT_WINDOW_MS;
}

// Our own reaction: the bridge names us by our JID (its user part is our number's digits).
function ownReaction(message, phone) {
  const digits = (phone || "").replace(/\D/g, "");
  return (message.reactions || []).find((r) => r.sender === "me" || (digits && r.sender.split(/[:@]/)[0] === digits));
}

let openMenu = null;

// `ctx`: {sessionId, chatId, phone, thread, onReply(message), report(text)}.
export function showMenu(ctx, message, button) {
  // Redrawn for the same message (a receipt or a reaction arrived): focus stays on the item it was on.
  const keep = openMenu && openMenu.messageId === message.id ? openMenu.focused() : null;
  if (openMenu) openMenu.close(false);
  const path = sessionPath(ctx.sessionId, `/chats/${encodeURIComponent(ctx.chatId)}/messages/${encodeURIComponent(message.id)}`);
  const mine = ownReaction(message, ctx.phone);
  const items = [];
  const item = (label, run, attrs = {}) => {
    const el = h("button", { type: "button", role: "menuitem", tabindex: "-1", ...attrs }, label);
    el.addEventListener("click", () => {
      close();
      run();
    });
    items.push(el);
    return el;
  };
  const react = (emoji) => async () => {
    try {
      ctx.thread.upsert(await api(`${path}/reaction`, { method: "POST", json: { emoji } }));
      announce(emoji ? `Reacted with ${emoji}` : "Reaction removed");
    } catch (err) {
      ctx.report(err.message);
    }
  };
  const emojiRow = h("div", { class: "menu-emojis", role: "group", "aria-label": "React" },
    EMOJIS.map((emoji) => item(emoji, react(emoji), {
      class: mine && mine.emoji === emoji ? "emoji chosen" : "emoji",
      "aria-label": `React with ${emoji}`,
    })));
  const rest = [item("Reply", () => ctx.onReply(message))];
  if (message.quotedId && ctx.thread.messages.has(message.quotedId)) {
    rest.push(item("Show the replied message", () => ctx.thread.reveal(message.quotedId)));
  }
  if (mine) rest.push(item(`Remove my reaction ${mine.emoji}`, react("")));
  if (canEdit(message)) {
    rest.push(item("Edit", () => editDialog(ctx, message, path, button)));
  }
  if (message.fromMe) {
    const remove = async () => {
      const yes = await confirmDialog({
        title: "Delete for everyone?",
        text: "The message is deleted for you and for everyone in the chat.",
        confirm: "Delete for everyone",
      });
      if (!yes) return ctx.thread.focusActions(message.id);
      try {
        ctx.thread.upsert(await api(path, { method: "DELETE" }));
        announce("Message deleted for everyone");
      } catch (err) {
        ctx.report(err.message);
      }
    };
    rest.push(item("Delete for everyone", remove, { class: "danger-text" }));
  }
  const menu = h("div", { class: "message-menu", role: "menu", "aria-label": "Message actions" }, emojiRow, ...rest);
  button.setAttribute("aria-expanded", "true");
  button.after(menu);

  function close(focusButton = true) {
    if (openMenu !== handle) return;
    openMenu = null;
    menu.remove();
    button.setAttribute("aria-expanded", "false");
    document.removeEventListener("mousedown", outside, true);
    if (focusButton && button.isConnected) button.focus();
  }
  function outside(event) {
    if (!menu.contains(event.target) && event.target !== button) close(false);
  }
  menu.addEventListener("keydown", (event) => {
    const at = items.indexOf(document.activeElement);
    const keys = { ArrowDown: at + 1, ArrowRight: at + 1, ArrowUp: at - 1, ArrowLeft: at - 1, Home: 0, End: items.length - 1 };
    if (event.key === "Escape") {
      event.preventDefault();
      event.stopPropagation();
      close();
    } else if (event.key === "Tab") {
      close(false);
    } else if (event.key in keys) {
      event.preventDefault();
      event.stopPropagation();
      items[(keys[event.key] + items.length) % items.length].focus();
    }
  });
  document.addEventListener("mousedown", outside, true);
  // The item last focused (the redraw removes the menu, and the focus with it, before we are asked).
  const label = (el) => el.getAttribute("aria-label") || el.textContent;
  let last = null;
  menu.addEventListener("focusin", (event) => { last = label(event.target); });
  const handle = { close, focused: () => last, messageId: message.id };
  openMenu = handle;
  (items.find((el) => keep !== null && label(el) === keep) || items[0]).focus();
  menu.scrollIntoView({ block: "nearest" });
}

function editDialog(ctx, message, path, opener) {
  const field = h("textarea", { id: "edit-text", rows: 3, autofocus: true }, message.text || "");
  const error = h("p", { class: "error", role: "alert" });
  const save = h("button", { type: "submit", class: "primary" }, "Save");
  const cancel = h("button", { type: "button" }, "Cancel");
  const form = h("form", { class: "dialog-body" },
    h("label", { for: "edit-text" }, "Message"), field, error,
    h("p", { class: "muted small" }, "WhatsApp takes edits for 15 minutes after sending."),
    h("div", { class: "actions" }, cancel, save));
  // Focus goes back to the message's actions, even when a frame redrew its bubble meanwhile.
  const modal = openModal({
    title: "Edit message",
    content: form,
    onClose: () => opener.isConnected || ctx.thread.focusActions(message.id),
  });
  field.focus();
  field.setSelectionRange(field.value.length, field.value.length);
  cancel.addEventListener("click", () => modal.close("cancelled"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = field.value.trim();
    if (!text) {
      error.textContent = "A message cannot be empty. Delete it for everyone instead.";
      return;
    }
    if (text === message.text) {
      modal.close("unchanged");
      return;
    }
    save.disabled = true;
    try {
      const edited = await api(path, { method: "PATCH", json: { text } });
      modal.close("saved");
      ctx.thread.upsert(edited);
      announce("Message edited");
    } catch (err) {
      error.textContent = err.message;
    } finally {
      save.disabled = false;
    }
  });
  field.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
}
