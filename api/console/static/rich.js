// What a message's words become on screen: links that are safe to click (http and https only, opened
// without a referrer or a handle on this page), and the day separators of a thread.
import { h } from "./dom.js";

const URL_RE = /\bhttps?:\/\/[^\s<>"']+[^\s<>"'.,;:!?)\]]/gi;

// Text nodes and <a> elements for `text`; nothing but http(s) URLs becomes a link.
export function linkified(text) {
  const out = [];
  let at = 0;
  for (const match of text.matchAll(URL_RE)) {
    let href;
    try {
      href = new URL(match[0]);
    } catch {
      continue;
    }
    if (href.protocol !== "http:" && href.protocol !== "https:") continue;
    out.push(text.slice(at, match.index));
    out.push(h("a", { href: href.href, target: "_blank", rel: "noopener noreferrer" }, match[0]));
    at = match.index + match[0].length;
  }
  out.push(text.slice(at));
  return out.filter((part) => part !== "");
}

export function dayLabel(iso) {
  const when = new Date(iso);
  const today = new Date();
  const yesterday = new Date(today);
  yesterday.setDate(today.getDate() - 1);
  if (when.toDateString() === today.toDateString()) return "Today";
  if (when.toDateString() === yesterday.toDateString()) return "Yesterday";
  const sameYear = when.getFullYear() === today.getFullYear();
  return when.toLocaleDateString([], { weekday: "long", day: "numeric", month: "long", year: sameYear ? undefined : "numeric" });
}

// One separator before the first message of each day, redrawn after the thread changed.
export function separateDays(list) {
  for (const old of list.querySelectorAll("li.day")) old.remove();
  let last = null;
  for (const item of list.querySelectorAll("li.bubble")) {
    const day = new Date(item.dataset.ts).toDateString();
    if (day !== last) item.before(h("li", { class: "day" }, h("span", {}, dayLabel(item.dataset.ts))));
    last = day;
  }
}
