// Polls, locations and contact cards in a bubble, received or sent alike: a poll's options with their
// live tallies, a location with a map link (OpenStreetMap, opened without referrer or opener), and each
// contact as a card with its name and numbers.
import { h } from "./dom.js";
import { formatPhone } from "./phone.js";

function safeHttp(url) {
  try {
    const parsed = new URL(url);
    return parsed.protocol === "https:" || parsed.protocol === "http:" ? parsed.href : null;
  } catch {
    return null;
  }
}

function outLink(href, text) {
  return h("a", { href, target: "_blank", rel: "noopener noreferrer" }, text);
}

function poll(message) {
  const { question, options, selectable, tally = [] } = message.poll;
  const votes = new Map(tally.map((t) => [t.option, t.votes]));
  const voters = (message.poll.votes || []).filter((v) => v.options.length).length;
  const most = Math.max(1, ...votes.values());
  const how = selectable === 1 ? "Select one" : selectable === 0 ? "Select one or more" : `Select up to ${selectable}`;
  return h("div", { class: "poll" },
    h("p", { class: "poll-question", dir: "auto" }, question),
    h("p", { class: "muted small" }, how),
    h("ul", { class: "poll-options", "aria-label": "Options" }, options.map((option) => {
      const count = votes.get(option) || 0;
      const label = `${count} ${count === 1 ? "vote" : "votes"}`;
      const fill = h("span");
      fill.style.width = `${Math.round((100 * count) / most)}%`; // CSSOM: allowed by the strict CSP
      return h("li", { class: "poll-option", dataset: { votes: String(count) } },
        h("span", { class: "poll-line" }, h("span", { dir: "auto" }, option), h("span", { class: "poll-count" }, label)),
        h("span", { class: "poll-bar", "aria-hidden": "true" }, fill));
    })),
    h("p", { class: "muted small poll-total" }, voters === 1 ? "1 person voted" : `${voters} people voted`),
  );
}

function location(message) {
  const { latitude, longitude, name, address, url, live } = message.location;
  const lat = Number(latitude).toFixed(6);
  const lon = Number(longitude).toFixed(6);
  const map = `https://www.openstreetmap.org/?mlat=${lat}&mlon=${lon}#map=16/${lat}/${lon}`;
  const own = url && safeHttp(url);
  return h("div", { class: "location" },
    h("p", { class: "location-name", dir: "auto" }, name || (live ? "Live location" : "Location")),
    address ? h("p", { class: "muted small", dir: "auto" }, address) : null,
    live ? h("p", { class: "muted small" }, "Live location: its first position") : null,
    h("p", { class: "small" }, `${lat}, ${lon}`),
    h("p", { class: "location-links" }, outLink(map, "Open in map"), own ? [" · ", outLink(own, "Sender's link")] : null),
  );
}

// The numbers of a vCard: TEL lines ("TEL;type=CELL;waid=15551234567:+1 555 123 4567").
function vcardPhones(vcard) {
  const phones = [];
  for (const line of (vcard || "").split(/\r?\n/)) {
    if (!/^(item\d+\.)?TEL/i.test(line)) continue;
    const waid = /waid=(\d+)/i.exec(line);
    const value = line.slice(line.lastIndexOf(":") + 1).trim();
    const digits = waid ? waid[1] : value.replace(/[^\d]/g, "");
    if (digits) phones.push(value.startsWith("+") || waid ? formatPhone(`+${digits}`) : value);
  }
  return phones;
}

function contacts(message) {
  return h("ul", { class: "contact-cards", "aria-label": "Contacts" }, message.contacts.map((card) =>
    h("li", { class: "contact-card" },
      h("span", { class: "avatar", "aria-hidden": "true" }, (card.displayName || "?").trim().charAt(0).toUpperCase()),
      h("span", {},
        h("span", { class: "contact-name", dir: "auto" }, card.displayName),
        vcardPhones(card.vcard).map((phone) => h("span", { class: "contact-number" }, phone))))));
}

// The content of a poll, location or contact message, or null for other kinds.
export function kindBlock(message) {
  if (message.type === "poll" && message.poll) return poll(message);
  if (message.type === "location" && message.location) return location(message);
  if (message.type === "contact" && message.contacts && message.contacts.length) return contacts(message);
  return null;
}
