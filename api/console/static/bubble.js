// One message as a bubble: who wrote it (groups), the message it replies to, its media or poll, location
// or contact card, its words, reactions, time, ticks, and the button of its action menu.
import { formatTime, h } from "./dom.js";
import { kindBlock } from "./kinds.js";
import { mediaBlock } from "./media.js";
import { linkified } from "./rich.js";

const TICKS = {
  pending: ["…", "Sending"],
  sent: ["✓", "Sent"],
  delivered: ["✓✓", "Delivered"],
  read: ["✓✓", "Read"],
  played: ["✓✓", "Played"],
  failed: ["!", "Not sent"],
};

// A line of what a message says, for quotes and menus.
export function gist(message) {
  if (message.type === "revoked") return "This message was deleted";
  return message.text || message.summary || { image: "Photo", video: "Video", audio: "Audio", document: "Document" }[message.type] || "Message";
}

export function author(thread, message) {
  return message.fromMe ? "You" : message.senderName || thread.contactName || "Them";
}

// The replied-to message, as WhatsApp shows it above the reply; a button that goes to it when loaded.
function quote(thread, message) {
  const quoted = thread.messages.get(message.quotedId);
  if (!quoted) return h("p", { class: "quote muted small" }, "Reply to an earlier message");
  // Not a Tab stop of its own (the thread's messages are one): the menu's "Show the replied message".
  const go = h("button", { type: "button", class: "quote", tabindex: "-1", "aria-label": `Reply to ${author(thread, quoted)}: ${gist(quoted)}. Show that message` },
    h("span", { class: "quote-author" }, author(thread, quoted)),
    h("span", { class: "quote-text", dir: "auto" }, gist(quoted)));
  go.addEventListener("click", () => thread.reveal(quoted.id));
  return go;
}

export function renderBubble(thread, message) {
  const item = h("li", {
    class: `bubble ${message.fromMe ? "mine" : "theirs"}`,
    dataset: { id: message.id, status: message.status, type: message.type, ts: message.timestamp },
  });
  // Who wrote it matters in a group only: a 1:1 chat's header already says.
  if (thread.isGroup && !message.fromMe && message.senderName) item.append(h("p", { class: "sender", dir: "auto" }, message.senderName));
  if (message.quotedId && message.type !== "revoked") item.append(quote(thread, message));
  const media = mediaBlock(thread, message);
  if (media) item.append(...[media].flat());
  const kind = kindBlock(message);
  if (kind) item.append(kind);
  if (message.type === "revoked") item.append(h("p", { class: "text muted" }, "This message was deleted."));
  else if (message.text) item.append(h("p", { class: "text", dir: "auto" }, linkified(message.text)));
  else if (!media && !kind && message.summary) item.append(h("p", { class: "text" }, message.summary));
  if (message.reactions && message.reactions.length) {
    const emojis = message.reactions.map((r) => r.emoji).join(" ");
    item.append(h("p", { class: "reactions", "aria-label": `Reactions: ${emojis}` }, emojis));
  }
  const meta = h("p", { class: "meta" }, h("time", { datetime: message.timestamp }, formatTime(message.timestamp)));
  if (message.editedAt) meta.prepend("edited · ");
  if (message.fromMe) {
    const [mark, words] = TICKS[message.status] || ["", message.status];
    meta.append(h("span", { class: `tick tick-${message.status}`, title: words, "aria-label": words }, mark));
  }
  if (message.type !== "revoked" && thread.onMenu) {
    const more = h("button", {
      type: "button", class: "more", tabindex: "-1", "aria-haspopup": "menu", "aria-expanded": "false",
      "aria-label": `Actions for ${message.fromMe ? "your" : `${author(thread, message)}'s`} message: ${gist(message).slice(0, 60)}`,
    }, "⌄");
    more.addEventListener("click", () => thread.onMenu(message, more));
    item.append(more);
  }
  item.append(meta);
  return item;
}
