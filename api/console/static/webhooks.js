// Settings → Webhooks: the user's receivers of events (add, list, delete) and each one's last deliveries.
import { api } from "./api.js";
import { announce, formatTime, h, id } from "./dom.js";
import { confirmDialog } from "./modal.js";

const SHOWN = 5;
const STATE_WORDS = { delivered: "Delivered", pending: "Retrying", failed: "Failed" };

function deliveryLine(d) {
  const parts = [`${d.type}`, STATE_WORDS[d.state] || d.state];
  if (d.attempts > 1 || d.state !== "delivered") parts.push(`${d.attempts} attempt${d.attempts === 1 ? "" : "s"}`);
  if (d.state !== "delivered" && (d.lastStatus || d.lastError)) {
    parts.push(d.lastStatus ? `HTTP ${d.lastStatus}` : d.lastError);
  }
  if (d.state === "pending" && d.nextAttemptAt) parts.push(`next ${formatTime(d.nextAttemptAt)}`);
  return h("li", { class: `delivery delivery-${d.state}`, dataset: { state: d.state } }, parts.join(" · "));
}

export function webhooksCard() {
  const titleId = id("webhooks-title");
  const urlId = id("webhook-url");
  const url = h("input", { type: "url", id: urlId, required: true, placeholder: "https://example.com/hooks/whatsapp" });
  const messagesOnly = h("input", { type: "checkbox", id: id("webhook-messages") });
  const error = h("p", { class: "error", role: "alert" });
  const secret = h("div", { class: "webhook-secret", role: "status" });
  const list = h("ul", { class: "webhooks", "aria-label": "Webhooks" });
  const form = h("form", { class: "webhook-form", onsubmit: add },
    h("label", { for: urlId }, "Receiver URL"),
    url,
    h("label", { class: "inline" }, messagesOnly, " Messages only"),
    h("button", { type: "submit", class: "primary" }, "Add webhook"),
  );
  const card = h("section", { class: "card webhooks-card", "aria-labelledby": titleId },
    h("h2", { id: titleId }, "Webhooks"),
    h("p", { class: "muted" }, "Your server gets each event of your numbers as a signed POST (Standard Webhooks), in order, retried for a day until it answers."),
    form,
    secret,
    error,
    list,
    h("div", { class: "actions" }, h("button", { type: "button", onclick: load }, "Refresh deliveries")),
  );

  async function add(event) {
    event.preventDefault();
    error.textContent = "";
    secret.replaceChildren();
    const body = { url: url.value.trim() };
    if (messagesOnly.checked) body.events = ["message"];
    try {
      const created = await api("/webhooks", { method: "POST", json: body });
      url.value = "";
      secret.replaceChildren(
        h("p", {}, "Signing secret, shown only now: keep it to verify the webhook-signature header."),
        h("code", { class: "secret-value" }, created.secret),
      );
      announce("Webhook added");
      await load();
    } catch (err) {
      error.textContent = err.message;
    }
  }

  async function remove(hook) {
    const sure = await confirmDialog({
      title: "Delete this webhook?",
      text: `${hook.url} gets no more events, and its delivery history is deleted.`,
      confirm: "Delete",
    });
    if (!sure) return;
    error.textContent = "";
    try {
      await api(`/webhooks/${encodeURIComponent(hook.id)}`, { method: "DELETE" });
      announce("Webhook deleted");
      await load();
    } catch (err) {
      error.textContent = err.message;
    }
  }

  async function item(hook) {
    let deliveries = [];
    try {
      deliveries = (await api(`/webhooks/${encodeURIComponent(hook.id)}/deliveries?limit=${SHOWN}`)).items;
    } catch (err) {
      error.textContent = err.message;
    }
    const events = hook.events ? hook.events.join(", ") : "all events";
    return h("li", { class: "webhook", dataset: { id: hook.id } },
      h("p", { class: "name" }, hook.url),
      h("p", { class: "muted small" }, `${events} · added ${formatTime(hook.createdAt)}`),
      deliveries.length
        ? h("ul", { class: "deliveries", "aria-label": `Last deliveries to ${hook.url}` }, ...deliveries.map(deliveryLine))
        : h("p", { class: "muted small" }, "No deliveries yet."),
      h("button", { type: "button", class: "danger", "aria-label": `Delete webhook ${hook.url}`, onclick: () => remove(hook) }, "Delete"),
    );
  }

  async function load() {
    try {
      const hooks = await api("/webhooks");
      list.replaceChildren(...(await Promise.all(hooks.map(item))));
    } catch (err) {
      error.textContent = err.message;
    }
  }

  load();
  return card;
}
