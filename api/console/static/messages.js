// Messages: the chats of every connected number merged by recency (`/inbox/chats`), kept live by the
// WebSocket, and a chat's history with the composer. Narrow screens show the list or the chat.
import { showMenu } from "./actions.js";
import { api, hasRoute, sessionPath } from "./api.js";
import { author, gist } from "./bubble.js";
import { chatSearch } from "./chat_search.js";
import { composer } from "./composer.js";
import { announce, formatTime, h } from "./dom.js";
import { inboxSearch } from "./inbox_search.js";
import { formatPhone } from "./phone.js";
import { Thread } from "./thread.js";

const READ_ROUTE = "/sessions/{id}/chats/{chatId}/read";

// A chat the bridge knows no name for is named by its number (`+15551234567`): written as every other
// number is.
const BARE_NUMBER = /^\+\d+$/;

export function chatTitle(chat) {
  if (chat.name) return BARE_NUMBER.test(chat.name) ? formatPhone(chat.name) : chat.name;
  const user = chat.id.split("@")[0];
  return /^\d+$/.test(user) ? formatPhone(`+${user}`) : user;
}

function preview(message) {
  if (!message) return "";
  const who = message.fromMe ? "You: " : "";
  if (message.type === "revoked") return `${who}This message was deleted`;
  if (message.text) return who + message.text;
  if (message.summary) return who + message.summary;
  const kinds = { image: "Photo", video: "Video", audio: message.media?.ptt ? "Voice note" : "Audio", document: "Document", sticker: "Sticker" };
  return who + (kinds[message.type] || "Message");
}

export function renderMessages(main, { live, route = [] }) {
  let sessions = new Map();
  let chats = [];
  let numberFilter = "";
  let open = null; // { sessionId, chatId, thread }
  let reloadTimer = null;
  // Marking read is a later addition to the API: used when this bridge's OpenAPI document lists it.
  const canMarkRead = hasRoute(READ_ROUTE, "post");

  const pageError = h("p", { class: "error", role: "alert" });
  // Numbers that left the inbox while the page was open (removed, or unlinked by the phone).
  const notice = h("p", { class: "notice", role: "status" });
  const list = h("ul", { class: "chat-list", "aria-label": "Chats" });
  const numberSelect = h("select", { id: "number-filter" });
  numberSelect.addEventListener("change", () => {
    numberFilter = numberSelect.value;
    drawList();
  });
  // Search over the chats shown: by name, by number (digits in any format), by the last message; and
  // through the server over every chat and message (inbox_search.js).
  let query = "";
  const search = h("input", { id: "chat-search", type: "search", placeholder: "Search chats", autocomplete: "off" });
  const beyond = inboxSearch({
    shown: (sessionId, chatId) => chats.some((c) => c.sessionId === sessionId && c.id === chatId && matches(c)),
    open: (chat) => {
      if (!chats.some((c) => c.sessionId === chat.sessionId && c.id === chat.id)) chats.push(chat);
      openChat(chat.sessionId, chat.id);
    },
    title: (chat) => chatTitle(chat),
    via: (sessionId) => numberLabel(sessionId),
  });
  search.addEventListener("input", () => {
    query = search.value.trim().toLowerCase();
    drawList();
    beyond.search(search.value.trim());
  });
  const filters = h("div", { class: "filters" },
    // One channel today: said, not a toggle that does nothing.
    h("span", { class: "chip" }, "WhatsApp"),
    h("label", { for: "number-filter", class: "visually-hidden" }, "Number"),
    numberSelect,
    h("label", { for: "chat-search", class: "visually-hidden" }, "Search chats"),
    search,
  );
  const listPane = h("section", { class: "list-pane", "aria-labelledby": "inbox-title" },
    h("h1", { id: "inbox-title" }, "Messages"), filters, pageError, notice, list, beyond.el);
  const chatPane = h("section", { class: "chat-pane", "aria-label": "Conversation" },
    h("p", { class: "muted empty" }, "Choose a chat to read it."));
  const layout = h("div", { class: "inbox", dataset: { view: "list" } }, listPane, chatPane);
  list.addEventListener("keydown", (event) => {
    const items = [...list.querySelectorAll("button.chat-item")];
    const at = items.indexOf(document.activeElement);
    if (at < 0) return;
    const to = { ArrowDown: at + 1, ArrowUp: at - 1, Home: 0, End: items.length - 1 }[event.key];
    if (to === undefined || !items[to]) return;
    event.preventDefault();
    items[at].tabIndex = -1;
    items[to].tabIndex = 0;
    items[to].focus();
  });
  main.replaceChildren(layout);

  function matches(chat) {
    if (!query) return true;
    const digits = query.replace(/[\s()+-]/g, "");
    const number = chat.id.split("@")[0];
    if (/^\d+$/.test(digits) && number.includes(digits)) return true;
    const text = `${chatTitle(chat)} ${chat.lastMessage?.text || ""}`.toLowerCase();
    return text.includes(query);
  }

  function keyOf(sessionId, chatId) {
    return `${sessionId}|${chatId}`;
  }

  function numberLabel(sessionId) {
    const session = sessions.get(sessionId);
    if (!session) return "";
    return session.phone ? formatPhone(session.phone) : `Number ${session.slot}`;
  }

  let loaded = false;
  const phones = new Map(); // each session's phone as last seen, linked or not
  async function load() {
    const before = sessions;
    let all;
    try {
      all = await api("/sessions");
      sessions = new Map(all.filter((s) => s.status === "connected").map((s) => [s.id, s]));
      chats = (await api("/inbox/chats?limit=100")).items;
      pageError.textContent = "";
    } catch (err) {
      pageError.textContent = err.message;
      return;
    }
    if (loaded) {
      // Linked again by another phone: the slot started afresh, the old number's chats are gone.
      for (const now of all) {
        const was = phones.get(now.id);
        if (was && now.phone && now.phone !== was) {
          notice.textContent = `${formatPhone(now.phone)} replaced ${formatPhone(was)} in slot ${now.slot}: ${formatPhone(was)}'s chats were deleted here.`;
          announce(notice.textContent);
          if (open && open.sessionId === now.id) closeChat();
        }
      }
      for (const [sid, gone] of before) {
        if (sessions.has(sid)) continue;
        const still = all.find((s) => s.id === sid);
        left(gone, still ? "is not connected: its chats are hidden until it is linked again in Settings" : "was removed");
      }
    }
    for (const s of all) if (s.phone) phones.set(s.id, s.phone);
    if (open && !sessions.has(open.sessionId)) closeChat();
    if (!loaded && route.length === 2 && sessions.has(route[0])) openChat(route[0], route[1], { focus: false });
    loaded = true;
    numberSelect.replaceChildren(
      h("option", { value: "" }, "All numbers"),
      ...[...sessions.values()].map((s) => h("option", { value: s.id }, `${s.displayName || "Number " + s.slot} · ${numberLabel(s.id)}`)),
    );
    numberSelect.value = sessions.has(numberFilter) ? numberFilter : "";
    drawList();
  }

  function left(session, what) {
    const label = session.phone ? formatPhone(session.phone) : `Number ${session.slot}`;
    notice.textContent = `${label} ${what}.`;
    announce(notice.textContent);
  }

  function closeChat() {
    if (open) open.thread.dispose();
    open = null;
    chatPane.replaceChildren(h("p", { class: "muted empty" }, "Choose a chat to read it."));
    layout.dataset.view = "list";
    history.replaceState(null, "", "#/messages");
  }

  function scheduleReload() {
    clearTimeout(reloadTimer);
    reloadTimer = setTimeout(load, 300);
  }

  function drawList() {
    chats.sort((a, b) => (b.timestamp || "").localeCompare(a.timestamp || ""));
    // The unread total in the tab's title, as WhatsApp Web does.
    const unreadTotal = chats.reduce((sum, c) => sum + (sessions.has(c.sessionId) ? c.unreadCount || 0 : 0), 0);
    document.title = `${unreadTotal ? `(${unreadTotal}) ` : ""}Messages · WhatsApp bridge console`;
    const shown = chats.filter((c) => (!numberFilter || c.sessionId === numberFilter) && matches(c));
    if (!sessions.size) {
      list.replaceChildren(h("li", { class: "muted" }, "No WhatsApp number is connected. ", h("a", { href: "#/settings" }, "Link one in Settings.")));
      return;
    }
    if (!shown.length) {
      list.replaceChildren(h("li", { class: "muted" }, query ? `No chat matches “${search.value.trim()}”.` : "No chats yet."));
      return;
    }
    const active = document.activeElement;
    const focused = active && list.contains(active) ? keyOf(active.dataset.session, active.dataset.chat) : null;
    list.replaceChildren(...shown.map((chat) => {
      const current = open && open.sessionId === chat.sessionId && open.chatId === chat.id;
      const unread = chat.unreadCount > 0
        ? h("span", { class: "unread", "aria-label": `${chat.unreadCount} unread` }, String(chat.unreadCount))
        : null;
      return h("li", {},
        h("button", {
          type: "button", class: chat.unreadCount > 0 ? "chat-item has-unread" : "chat-item", "aria-current": current ? "true" : null,
          dataset: { chat: chat.id, session: chat.sessionId },
          onclick: () => openChat(chat.sessionId, chat.id),
        },
        h("span", { class: "chat-line" }, h("span", { class: "chat-name", dir: "auto" }, chatTitle(chat)), h("time", { datetime: chat.timestamp }, formatTime(chat.timestamp))),
        h("span", { class: "chat-line" }, h("span", { class: "chat-last", dir: "auto" }, preview(chat.lastMessage)), unread),
        h("span", { class: "via" }, `via ${numberLabel(chat.sessionId)}`)),
      );
    }));
    // One Tab stop for the whole list (the open chat's, else the first); arrows move within it.
    const items = [...list.querySelectorAll("button.chat-item")];
    const stop = items.find((b) => keyOf(b.dataset.session, b.dataset.chat) === focused)
      || items.find((b) => b.getAttribute("aria-current") === "true") || items[0];
    for (const item of items) item.tabIndex = item === stop ? 0 : -1;
    if (focused && stop) stop.focus();
  }

  // Numbers a status frame said are not connected (until the next load): their chats cannot be marked
  // read on WhatsApp, and asking would only be a 409.
  const notConnected = new Set();

  function markRead(chat) {
    chat.unreadCount = 0;
    canMarkRead.then((yes) => {
      if (!yes || notConnected.has(chat.sessionId)) return;
      api(sessionPath(chat.sessionId, `/chats/${encodeURIComponent(chat.id)}/read`), { method: "POST" }).catch(() => {});
    });
  }

  function openChat(sessionId, chatId, { focus = true } = {}) {
    if (open) open.thread.dispose();
    const chat = chats.find((c) => c.sessionId === sessionId && c.id === chatId);
    // What failed in a message action (a refused edit, the number gone), said above the composer.
    const actionError = h("p", { class: "error action-error", role: "alert" });
    let box = null;
    const thread = new Thread(sessionId, chatId, {
      unread: chat ? chat.unreadCount || 0 : 0,
      contactName: chat ? chatTitle(chat) : null,
      onMenu: (message, button) => {
        actionError.textContent = "";
        showMenu({
          sessionId, chatId, thread, phone: sessions.get(sessionId)?.phone,
          onReply: (quoted) => box.reply(quoted, { author: author(thread, quoted), text: gist(quoted) }),
          report: (text) => { actionError.textContent = text; },
        }, message, button);
      },
    });
    open = { sessionId, chatId, thread };
    history.replaceState(null, "", `#/messages/${encodeURIComponent(sessionId)}/${encodeURIComponent(chatId)}`);
    if (chat && chat.unreadCount) markRead(chat);
    // The same contact reached through several numbers: choose which one replies.
    const reachable = chats.filter((c) => c.id === chatId && sessions.has(c.sessionId));
    let from = null;
    if (reachable.length > 1) {
      from = h("select", { id: "reply-from" }, reachable.map((c) => h("option", { value: c.sessionId }, numberLabel(c.sessionId))));
      from.value = sessionId;
      // The other number's conversation with the same contact; the draft (kept per contact) and the
      // focus stay.
      from.addEventListener("change", () => {
        openChat(from.value, chatId, { focus: false });
        document.getElementById("reply-from")?.focus();
        announce(`Replies go out from ${numberLabel(from.value)}`);
      });
    }
    const back = h("button", { type: "button", class: "back", onclick: () => {
      layout.dataset.view = "list";
      history.replaceState(null, "", "#/messages");
      drawList();
      const item = list.querySelector(`button[data-chat="${CSS.escape(chatId)}"][data-session="${CSS.escape(sessionId)}"]`);
      if (item) item.focus();
    } }, "‹ Chats");
    box = composer({
      target: () => ({ sessionId, to: chatId }),
      draftKey: chatId,
      onSent: (sent) => {
        setTimeout(() => {
          if (open && open.thread === thread && !thread.byId.has(sent.id)) thread.refreshNewest();
        }, 1500);
      },
    });
    chatPane.replaceChildren(
      h("header", { class: "chat-head" },
        back,
        h("div", {},
          h("h2", { dir: "auto" }, chat ? chatTitle(chat) : chatTitle({ id: chatId })),
          // The contact's number under a saved name (a group's id says nothing).
          chat && chat.name && !BARE_NUMBER.test(chat.name) && /^\d+@s\.whatsapp\.net$/.test(chatId)
            ? h("p", { class: "contact-phone" }, formatPhone(`+${chatId.split("@")[0]}`))
            : null,
          from
            ? h("p", { class: "via" }, h("label", { for: "reply-from" }, "Reply from "), from)
            : h("p", { class: "via" }, `via ${numberLabel(sessionId)}`),
        ),
      ),
      chatSearch(sessionId, chatId),
      thread.scroller,
      actionError,
      box.el,
    );
    layout.dataset.view = "chat";
    drawList();
    thread.open();
    // On a phone the keyboard would cover the thread: the composer waits for a tap there.
    if (focus && matchMedia("(min-width: 701px)").matches) box.focus();
  }

  function onMessage(frame) {
    const { sessionId, chatId, message } = frame;
    if (!message || !sessions.has(sessionId)) {
      scheduleReload();
      return;
    }
    let chat = chats.find((c) => c.sessionId === sessionId && c.id === chatId);
    if (!chat) {
      chat = { id: chatId, sessionId, name: message.fromMe ? null : message.senderName, isGroup: chatId.endsWith("@g.us"), unreadCount: 0, timestamp: message.timestamp, lastMessage: null };
      chats.push(chat);
    }
    const isOpen = open && open.sessionId === sessionId && open.chatId === chatId;
    const isNew = !(chat.lastMessage && chat.lastMessage.id === message.id) && !(isOpen && open.thread.byId.has(message.id));
    if (!chat.timestamp || message.timestamp >= chat.timestamp || chat.lastMessage?.id === message.id) {
      chat.lastMessage = message;
      chat.timestamp = message.timestamp;
    }
    if (isNew && !message.fromMe) {
      if (isOpen && document.visibilityState === "visible") markRead(chat);
      else chat.unreadCount = (chat.unreadCount || 0) + 1;
      announce(`New message from ${chatTitle(chat)}`);
    }
    if (isOpen) open.thread.upsert(message);
    drawList();
  }

  // A chat read elsewhere, renamed, or added or changed by a history sync (merged: the list reloads
  // once for a burst of new chats).
  function onChat(frame) {
    const chat = chats.find((c) => c.sessionId === frame.sessionId && c.id === frame.chatId);
    if (!chat) {
      if (sessions.has(frame.sessionId)) scheduleReload();
      return;
    }
    if (typeof frame.unreadCount === "number") chat.unreadCount = frame.unreadCount;
    if (frame.name) chat.name = frame.name;
    drawList();
  }

  // A reaction, edit, deletion or receipt: the message as it is now, in place; never a new unread.
  function onUpdate({ sessionId, chatId, message }) {
    const chat = chats.find((c) => c.sessionId === sessionId && c.id === chatId);
    if (chat && chat.lastMessage && chat.lastMessage.id === message.id) {
      chat.lastMessage = message;
      drawList();
    }
    if (open && open.sessionId === sessionId && open.chatId === chatId && open.thread.byId.has(message.id)) {
      open.thread.upsert(message);
    }
  }

  const unsubscribe = live.on((frame) => {
    if (frame.type === "message") onMessage(frame);
    else if (frame.type === "message_update" && frame.message) onUpdate(frame);
    else if (frame.type === "chat" && frame.chatId) onChat(frame);
    else if (frame.type === "session_deleted") {
      const gone = sessions.get(frame.sessionId);
      if (gone) {
        sessions.delete(frame.sessionId);
        chats = chats.filter((c) => c.sessionId !== frame.sessionId);
        left(gone, "was removed");
        if (open && open.sessionId === frame.sessionId) closeChat();
        drawList();
      }
      scheduleReload();
    }
    else if (frame.type === "status" && !frame.polled) {
      if (frame.status === "connected") notConnected.delete(frame.sessionId);
      else notConnected.add(frame.sessionId);
      scheduleReload();
    }
    else if (frame.type === "resync") {
      scheduleReload();
      if (open) open.thread.refreshNewest();
    }
  });
  load();
  return () => {
    unsubscribe();
    clearTimeout(reloadTimer);
    if (open) open.thread.dispose();
  };
}
