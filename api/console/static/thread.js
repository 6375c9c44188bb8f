// One chat's messages: history loaded upwards as the user scrolls (cursor pages), media fetched with the
// API key and shown inline (images, audio) or offered as downloads, delivery ticks updated in place.
import { api, sessionPath } from "./api.js";
import { formatSize, formatTime, h } from "./dom.js";
import { linkified, separateDays } from "./rich.js";

const PAGE = 30;
const TICKS = {
  pending: ["…", "Sending"],
  sent: ["✓", "Sent"],
  delivered: ["✓✓", "Delivered"],
  read: ["✓✓", "Read"],
  played: ["✓✓", "Played"],
  failed: ["!", "Not sent"],
};

function mediaPath(sessionId, message) {
  return sessionPath(sessionId, `/chats/${encodeURIComponent(message.chatId)}/messages/${encodeURIComponent(message.id)}/media`);
}

async function mediaUrl(sessionId, message) {
  const res = await api(mediaPath(sessionId, message), { raw: true });
  return URL.createObjectURL(await res.blob());
}

export class Thread {
  constructor(sessionId, chatId) {
    this.sessionId = sessionId;
    this.chatId = chatId;
    this.isGroup = chatId.endsWith("@g.us");
    this.cursor = null;
    this.loading = false;
    this.done = false;
    this.byId = new Map();
    this.urls = [];
    this.list = h("ol", { class: "thread", "aria-label": "Messages" });
    this.top = h("li", { class: "thread-top muted" }, "Loading…");
    this.list.append(this.top);
    this.scroller = h("div", { class: "thread-scroll", tabindex: "0" }, this.list);
    this.scroller.addEventListener("scroll", () => {
      if (this.scroller.scrollTop < 80) this.loadOlder();
    });
  }

  dispose() {
    for (const url of this.urls) URL.revokeObjectURL(url);
  }

  async loadOlder() {
    if (this.loading || this.done) return;
    this.loading = true;
    const query = new URLSearchParams({ limit: String(PAGE) });
    if (this.cursor) query.set("cursor", this.cursor);
    try {
      const page = await api(sessionPath(this.sessionId, `/chats/${encodeURIComponent(this.chatId)}/messages?${query}`));
      const before = this.scroller.scrollHeight - this.scroller.scrollTop;
      const first = this.top.nextSibling;
      for (const message of [...page.items].reverse()) {
        if (this.byId.has(message.id)) continue;
        this.list.insertBefore(this.bubble(message), first);
      }
      this.cursor = page.nextCursor;
      this.done = !page.nextCursor;
      this.top.textContent = this.done ? "Start of the conversation" : "Loading older messages…";
      separateDays(this.list);
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
      const page = await api(sessionPath(this.sessionId, `/chats/${encodeURIComponent(this.chatId)}/messages?limit=${PAGE}`));
      for (const message of [...page.items].reverse()) this.upsert(message);
    } catch {
      /* the next frame or refresh brings them */
    }
  }

  // A new or changed message (a `message` frame, or a send's result): appended, or its ticks updated.
  upsert(message) {
    const known = this.byId.get(message.id);
    if (known) {
      const replacement = this.bubble(message);
      known.replaceWith(replacement);
      return;
    }
    const stick = this.scroller.scrollHeight - this.scroller.scrollTop - this.scroller.clientHeight < 120;
    this.list.append(this.bubble(message));
    separateDays(this.list);
    if (stick || message.fromMe) this.scroller.scrollTop = this.scroller.scrollHeight;
  }

  bubble(message) {
    const item = h("li", {
      class: `bubble ${message.fromMe ? "mine" : "theirs"}`,
      dataset: { id: message.id, status: message.status, type: message.type, ts: message.timestamp },
    });
    // Who wrote it matters in a group only: a 1:1 chat's header already says.
    if (this.isGroup && !message.fromMe && message.senderName) item.append(h("p", { class: "sender", dir: "auto" }, message.senderName));
    const media = message.media;
    if (media && message.fromMe) {
      // What this console sent: the bridge keeps no copy of it to download (404 media_not_available).
      const kinds = { image: "Photo", video: "Video", audio: media.ptt ? "Voice note" : "Audio", document: "Document" };
      const what = media.fileName || kinds[message.type] || "File";
      const length = media.seconds ? ` · ${media.seconds} s` : ` · ${formatSize(media.size)}`;
      item.append(h("p", { class: "sent-media" }, `${what}${length}`));
    } else if (media && message.type === "image") {
      const img = h("img", { class: "media-image", alt: media.fileName || "Image", loading: "lazy" });
      mediaUrl(this.sessionId, message)
        .then((url) => { this.urls.push(url); img.src = url; })
        .catch((err) => img.replaceWith(h("p", { class: "error" }, err.message)));
      item.append(img);
    } else if (media && message.type === "audio") {
      const audio = h("audio", { controls: true, preload: "none", "aria-label": media.ptt ? "Voice note" : "Audio" });
      mediaUrl(this.sessionId, message)
        .then((url) => { this.urls.push(url); audio.src = url; })
        .catch((err) => audio.replaceWith(h("p", { class: "error" }, err.message)));
      item.append(h("p", { class: "muted small" }, media.ptt ? "Voice note" : "Audio", media.seconds ? ` · ${media.seconds} s` : ""), audio);
    } else if (media) {
      const name = media.fileName || `${message.type}`;
      const download = h("button", { type: "button", class: "download" }, `Download ${name} (${formatSize(media.size)})`);
      const error = h("p", { class: "error", role: "alert" });
      download.addEventListener("click", async () => {
        error.textContent = "";
        try {
          const url = await mediaUrl(this.sessionId, message);
          this.urls.push(url);
          const link = h("a", { href: url, download: name, hidden: true });
          document.body.append(link);
          link.click();
          link.remove();
        } catch (err) {
          error.textContent = err.message;
        }
      });
      item.append(download, error);
    }
    if (message.type === "revoked") item.append(h("p", { class: "text muted" }, "This message was deleted."));
    else if (message.text) item.append(h("p", { class: "text", dir: "auto" }, linkified(message.text)));
    else if (!media && message.summary) item.append(h("p", { class: "text" }, message.summary));
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
    item.append(meta);
    this.byId.set(message.id, item);
    return item;
  }
}
