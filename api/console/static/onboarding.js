// Onboarding: "What's your WhatsApp number?" saved to /users/me/whatsapp-phone (it links nothing), then
// Continue to the inbox (a number is connected) or to Settings (to link one).
import { api } from "./api.js";
import { announce, h } from "./dom.js";
import { formatPhone, phoneField } from "./phone.js";

export const SKIPPED = "bridge.onboardingSkipped";

export function renderOnboarding(main, { go }) {
  const done = h("p", { class: "success", role: "status" });
  const formError = h("p", { class: "error", role: "alert" });
  const save = h("button", { type: "submit", class: "primary" }, "Save");
  const skip = h("button", { type: "button", class: "link" }, "Skip for now");
  const next = h("button", { type: "button", class: "primary", hidden: true }, "Continue");
  const wrap = h("div", { class: "onboarding" }, h("p", { class: "muted" }, "Loading…"));
  main.replaceChildren(wrap);

  api("/users/me")
    .then((me) => draw(me.whatsappPhone))
    .catch((err) => wrap.replaceChildren(h("p", { class: "error", role: "alert" }, err.message)));

  function draw(current) {
    const phone = phoneField({ label: "Your WhatsApp number", initial: current });
    const form = h("form", { novalidate: true, class: "onboarding-form" },
      phone.el, h("div", { class: "actions" }, save, skip), formError, done, next);
    if (current) {
      done.textContent = `Saved: ${formatPhone(current)}`;
      next.hidden = false;
    }
    wrap.replaceChildren(
      h("h1", {}, "What's your WhatsApp number?"),
      h("p", { class: "muted" }, "So your team knows where to reach you. This does not connect the inbox; you link numbers in Settings."),
      form,
    );
    phone.focus();
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      done.textContent = "";
      formError.textContent = "";
      next.hidden = true;
      const problem = phone.validate();
      phone.error(problem);
      if (problem) return phone.focus();
      save.disabled = true;
      try {
        const saved = await api("/users/me/whatsapp-phone", { method: "PUT", json: { phone: phone.value() } });
        done.textContent = `Saved: ${formatPhone(saved.phone)}`;
        announce("Your number is saved");
        next.hidden = false;
        next.focus();
      } catch (err) {
        phone.error(err.message);
        phone.focus();
      } finally {
        save.disabled = false;
      }
    });
    skip.addEventListener("click", () => {
      sessionStorage.setItem(SKIPPED, "1");
      go("settings");
    });
    // Where the console goes next: the inbox once a number is connected, else Settings to link one.
    next.addEventListener("click", async () => {
      next.disabled = true;
      const sessions = await api("/sessions").catch(() => []);
      go(sessions.some((s) => s.status === "connected") ? "messages" : "settings");
    });
  }
  return () => {};
}
