// Searching the whole inbox through the server (`GET /inbox/search`), beyond the chats the list has
// loaded: chats by name or number, and messages by their words, under the list as the user types.
import { api } from "./api.js";
import { formatTime, h } from "./dom.js";

const WAIT_MS = 250; // typing pauses this long before the server is asked
const MIN_CHARS = 2;

// { el, search(text) }. `shown(sessionId, chatId)`: the list already shows the chat; `open(chat)`:
// open a chat found (an /inbox/chats item); `title(chat)`, `via(sessionId)`: how the list names them.
export function inboxSearch({ shown, open, title, via }) {
  const status = h("p", { class: "muted small", role: "status" });
  const chatList = h("ul", { class: "found-list", "aria-label": "More chats" });
  const messageList = h("ul", { class: "found-list", "aria-label": "Messages in all chats" });
  const chatsHead = h("h2", { class: "found-head" }, "More chats");
  const messagesHead = h("h2", { class: "found-head" }, "Messages");
  const el = h("section", { class: "inbox-found", "aria-label": "Found in all chats", hidden: true },
    status, chatsHead, chatList, messagesHead, messageList);
  let timer = null;
  let seq = 0;

  function item(chat, lines) {
    return h("li", {}, h("button", {
      type: "button", class: "found-item", dataset: { chat: chat.id, session: chat.sessionId },
      onclick: () => open(chat),
    }, ...lines));
  }

  function draw(found, text) {
    const chats = found.chats.filter((c) => !shown(c.sessionId, c.id));
    chatList.replaceChildren(...chats.map((chat) => item(chat, [
      h("span", { class: "chat-line" }, h("span", { class: "chat-name", dir: "auto" }, title(chat)),
        h("time", { datetime: chat.timestamp }, formatTime(chat.timestamp))),
      h("span", { class: "via" }, `via ${via(chat.sessionId)}`),
    ])));
    messageList.replaceChildren(...found.messages.map(({ sessionId, chatName, message }) => {
      const chat = { id: message.chatId, sessionId, name: chatName, timestamp: message.timestamp, unreadCount: 0, lastMessage: message };
      return item(chat, [
        h("span", { class: "chat-line" }, h("span", { class: "chat-name", dir: "auto" }, title(chat)),
          h("time", { datetime: message.timestamp }, formatTime(message.timestamp))),
        h("span", { class: "chat-last", dir: "auto" }, message.text || message.summary || ""),
      ]);
    }));
    chatsHead.hidden = chatList.hidden = !chats.length;
    messagesHead.hidden = messageList.hidden = !found.messages.length;
    const parts = [];
    if (chats.length) parts.push(`${chats.length} more chat${chats.length === 1 ? "" : "s"}`);
    if (found.messages.length) parts.push(`${found.messages.length} message${found.messages.length === 1 ? "" : "s"}`);
    status.textContent = parts.length ? `In all chats: ${parts.join(" and ")}.` : `Nothing else in your chats matches “${text}”.`;
  }

  async function ask(text, mine) {
    try {
      const found = await api(`/inbox/search?${new URLSearchParams({ q: text, limit: "20" })}`);
      if (mine === seq) draw(found, text);
    } catch (err) {
      if (mine === seq) status.textContent = err.message;
    }
  }

  function search(text) {
    clearTimeout(timer);
    const mine = ++seq;
    if (text.length < MIN_CHARS) {
      el.hidden = true;
      return;
    }
    el.hidden = false;
    status.textContent = "Searching all chats…";
    timer = setTimeout(() => ask(text, mine), WAIT_MS);
  }
  return { el, search };
}
