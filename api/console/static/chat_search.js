// Searching within the open chat: its messages that match, from `GET .../chats/{chatId}/search`.
import { api, sessionPath } from "./api.js";
import { formatTime, h, id } from "./dom.js";

export function chatSearch(sessionId, chatId) {
  const inputId = id("chat-find");
  const input = h("input", { id: inputId, type: "search", placeholder: "Search in this chat", autocomplete: "off" });
  const status = h("p", { class: "muted small", role: "status" });
  const results = h("ol", { class: "found", "aria-label": "Messages found", hidden: true });
  const form = h("form", { class: "chat-find", role: "search" },
    h("label", { for: inputId, class: "visually-hidden" }, "Search in this chat"),
    input,
    h("button", { type: "submit" }, "Find"),
  );
  let seq = 0;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const q = input.value.trim();
    const mine = ++seq;
    if (!q) {
      results.hidden = true;
      status.textContent = "";
      return;
    }
    status.textContent = "Searching…";
    try {
      const query = new URLSearchParams({ q, limit: "50" });
      const page = await api(sessionPath(sessionId, `/chats/${encodeURIComponent(chatId)}/search?${query}`));
      if (mine !== seq) return;
      results.replaceChildren(...page.items.map((m) => h("li", {},
        h("p", { class: "text", dir: "auto" }, m.text || m.summary || ""),
        h("p", { class: "meta" }, h("time", { datetime: m.timestamp }, formatTime(m.timestamp))),
      )));
      results.hidden = !page.items.length;
      const n = page.items.length;
      status.textContent = n ? `${n} message${n === 1 ? "" : "s"} found` : `No message matches “${q}”.`;
    } catch (err) {
      if (mine === seq) status.textContent = err.message;
    }
  });
  return h("div", { class: "chat-search" }, form, status, results);
}
