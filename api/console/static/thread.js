// One chat's messages: history loaded upwards as the user scrolls (cursor pages), a "new messages"
// marker where the unread ones began when the chat was opened, changes applied in place. The bubbles'
// action buttons are one Tab stop walked with the arrow keys (like the chat list).
import { api, sessionPath } from "./api.js";
import { h } from "./dom.js";
import { renderBubble } from "./bubble.js";
import { separateDays } from "./rich.js";

const PAGE = 30;
const MAX_PAGE = 100;

export class Thread {
  // `unread`: how many incoming messages were unread when the chat was opened (the marker goes above
  // them); `onMenu(message, button)`: opens a message's actions.
  constructor(sessionId, chatId, { unread = 0, contactName = null, onMenu = null } = {}) {
    this.sessionId = sessionId;
    this.chatId = chatId;
    this.isGroup = chatId.endsWith("@g.us");
    this.contactName = contactName;
    this.onMenu = onMenu;
    this.unread = unread;
    this.marker = null;
    this.cursor = null;
    this.loading = false;
    this.done = false;
    this.byId = new Map(); // id → its bubble
    this.messages = new Map(); // id → the message as last seen
    this.urls = [];
    this.list = h("ol", { class: "thread", "aria-label": "Messages" });
    this.top = h("li", { class: "thread-top muted" }, "Loading…");
    this.list.append(this.top);
    this.scroller = h("div", { class: "thread-scroll", tabindex: "0", "aria-label": "Conversation history" }, this.list);
    this.scroller.addEventListener("scroll", () => {
      if (this.scroller.scrollTop < 80) this.loadOlder();
    });
    this.list.addEventListener("keydown", (event) => this.walk(event));
    this.list.addEventListener("focusin", (event) => {
      if (event.target.classList.contains("more")) this.stop(event.target);
    });
  }

  dispose() {
    for (const url of this.urls) URL.revokeObjectURL(url);
  }

  messagesPath(query) {
    return sessionPath(this.sessionId, `/chats/${encodeURIComponent(this.chatId)}/messages?${query}`);
  }

  // The first page, then the marker, and the view where reading resumes: the marker, else the end.
  async open() {
    await this.loadOlder(Math.min(MAX_PAGE, Math.max(PAGE, this.unread + 5)));
    if (this.unread > 0) {
      this.placeMarker(this.unread);
      this.days();
    }
    if (this.marker) this.scroller.scrollTop = Math.max(0, this.marker.offsetTop - this.list.offsetTop - 8);
    else this.scroller.scrollTop = this.scroller.scrollHeight;
  }

  placeMarker(count) {
    const incoming = [...this.list.querySelectorAll("li.bubble.theirs")];
    const first = incoming[Math.max(0, incoming.length - count)];
    if (!first) return;
    this.marker = h("li", { class: "unread-marker" }, h("span", {}));
    first.before(this.marker);
    this.countMarker();
  }

  countMarker() {
    if (!this.marker) return;
    let count = 0;
    for (let el = this.marker.nextElementSibling; el; el = el.nextElementSibling) {
      if (el.classList.contains("theirs")) count += 1;
    }
    const words = `${count} unread ${count === 1 ? "message" : "messages"}`;
    this.marker.firstChild.textContent = words;
  }

  async loadOlder(limit = PAGE) {
    if (this.loading || this.done) return;
    this.loading = true;
    const query = new URLSearchParams({ limit: String(limit) });
    if (this.cursor) query.set("cursor", this.cursor);
    try {
      const page = await api(this.messagesPath(query));
      const before = this.scroller.scrollHeight - this.scroller.scrollTop;
      const first = this.top.nextSibling;
      for (const message of [...page.items].reverse()) {
        if (this.byId.has(message.id)) continue;
        this.list.insertBefore(this.render(message), first);
      }
      this.cursor = page.nextCursor;
      this.done = !page.nextCursor;
      this.top.textContent = this.done ? "Start of the conversation" : "Loading older messages…";
      this.redrawQuotes();
      this.days();
      this.scroller.scrollTop = this.scroller.scrollHeight - before;
    } catch (err) {
      this.top.textContent = err.message;
    } finally {
      this.loading = false;
    }
    // A short first page does not fill the pane: keep going until it scrolls or the history ends.
    if (!this.done && this.scroller.scrollHeight <= this.scroller.clientHeight + 80) this.loadOlder();
  }

  // The newest page again (after a send while live events are down, or a resync): new ones appended.
  async refreshNewest() {
    try {
      const page = await api(this.messagesPath(`limit=${PAGE}`));
      for (const message of [...page.items].reverse()) this.upsert(message);
    } catch {
      /* the next frame or refresh brings them */
    }
  }

  // A new or changed message (a frame, or an action's answer): appended, or replaced in place.
  upsert(message) {
    const known = this.byId.get(message.id);
    if (known) {
      const hadFocus = known.contains(document.activeElement);
      const menuOpen = known.querySelector(".message-menu");
      const replacement = this.render(message);
      known.replaceWith(replacement);
      this.fixStop();
      // A receipt or a reaction while its menu is open: the menu stays open, for the message as it is now.
      const more = replacement.querySelector(":scope > button.more");
      if (menuOpen && more && this.onMenu) this.onMenu(message, more);
      else if (hadFocus) this.focusActions(message.id);
      this.redrawQuotes(message.id);
      return;
    }
    const stick = this.scroller.scrollHeight - this.scroller.scrollTop - this.scroller.clientHeight < 120;
    this.list.append(this.render(message));
    // A message that arrives while the page is hidden is unread when the user comes back.
    if (!message.fromMe && !this.marker && document.visibilityState !== "visible") {
      this.placeMarker(1);
    }
    this.countMarker();
    this.days();
    if (stick || message.fromMe) this.scroller.scrollTop = this.scroller.scrollHeight;
  }

  render(message) {
    this.messages.set(message.id, message);
    const item = renderBubble(this, message);
    this.byId.set(message.id, item);
    return item;
  }

  // Replies whose quoted message arrived (or changed) after them show it now.
  redrawQuotes(changedId = null) {
    for (const [id, message] of this.messages) {
      if (!message.quotedId) continue;
      const item = this.byId.get(id);
      const stale = changedId
        ? message.quotedId === changedId
        : item.querySelector("p.quote") && this.messages.has(message.quotedId);
      if (!stale) continue;
      const replacement = renderBubble(this, message);
      item.replaceWith(replacement);
      this.byId.set(id, replacement);
    }
    this.fixStop();
  }

  days() {
    separateDays(this.list);
    // The day comes first, then where the unread messages begin.
    const day = this.marker && this.marker.nextElementSibling;
    if (day && day.classList.contains("day")) day.after(this.marker);
    this.fixStop();
  }

  // Scroll to a message and focus its actions (a quote's "show that message").
  reveal(id) {
    const item = this.byId.get(id);
    if (!item) return;
    item.scrollIntoView({ block: "center" });
    item.classList.add("flash");
    setTimeout(() => item.classList.remove("flash"), 1500);
    const more = item.querySelector(".more");
    if (more) more.focus();
  }

  // Focus on a message's actions; a deleted message has none: its neighbour's, else the history.
  focusActions(id) {
    const item = this.byId.get(id);
    if (!item) return;
    const all = this.buttons();
    const own = item.querySelector(":scope > button.more");
    const later = all.find((b) => item.compareDocumentPosition(b) & Node.DOCUMENT_POSITION_FOLLOWING);
    const target = own || later || all[all.length - 1];
    if (target) {
      this.stop(target);
      target.focus();
    } else this.scroller.focus();
  }

  // --- one Tab stop for the action buttons; ArrowUp/ArrowDown/Home/End move between messages ---------

  buttons() {
    return [...this.list.querySelectorAll("li.bubble > button.more")];
  }

  stop(button) {
    for (const b of this.buttons()) b.tabIndex = b === button ? 0 : -1;
  }

  fixStop() {
    const all = this.buttons();
    if (!all.length) return;
    if (!all.some((b) => b.tabIndex === 0)) all[all.length - 1].tabIndex = 0;
  }

  walk(event) {
    const all = this.buttons();
    const at = all.indexOf(document.activeElement);
    if (at < 0) return;
    const to = { ArrowDown: at + 1, ArrowUp: at - 1, Home: 0, End: all.length - 1 }[event.key];
    if (to === undefined || !all[to]) return;
    event.preventDefault();
    this.stop(all[to]);
    all[to].focus();
    all[to].closest("li").scrollIntoView({ block: "nearest" });
  }
}
