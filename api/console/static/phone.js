// Phone numbers as the server reads them: `phonenumbers`' metadata (phone_meta.js, made by the server)
// formats every number internationally, and a field with every country takes a pasted number with
// its own country code. Values leave the field in E.164 (+<country code><number>).
import { h, id } from "./dom.js";
import { META } from "./phone_meta.js";

// A number never breaks across lines: no-break spaces and hyphens.
const KEEP_TOGETHER = { " ": "\u00a0", "-": "\u2011" };
const names = new Intl.DisplayNames(["en"], { type: "region" });
const patterns = new Map();

function regex(source, whole) {
  const key = `${whole ? "=" : "^"}${source}`;
  if (!patterns.has(key)) patterns.set(key, new RegExp(whole ? `^(?:${source})$` : `^(?:${source})`));
  return patterns.get(key);
}

// Every region libphonenumber knows, by name: { region, dial, prefix, lengths, pattern, name }.
export const COUNTRIES = META.regions
  .map(([region, dial, prefix, lengths, pattern, valid]) => ({ region, dial, prefix, lengths, pattern, valid, name: names.of(region) || region }))
  .sort((a, b) => a.name.localeCompare(b.name));

// "491511234567" → ["49", "1511234567"]; calling codes are prefix-free, so the first that exists is it.
function splitCode(digits) {
  for (let n = 1; n <= 3; n += 1) {
    if (META.codes[digits.slice(0, n)]) return [digits.slice(0, n), digits.slice(n)];
  }
  return null;
}

// "+14155552671" → "+1 415-555-2671", as phonenumbers' INTERNATIONAL format writes it.
export function formatPhone(phone) {
  if (!phone) return "";
  const digits = String(phone).replace(/\D/g, "");
  const split = splitCode(digits);
  let text = `+${digits}`;
  if (split) {
    const [code, national] = split;
    const format = META.codes[code].find(([pattern, , leading]) =>
      (!leading || regex(leading, false).test(national)) && regex(pattern, true).test(national));
    text = `+${code} ${format ? national.replace(regex(format[0], true), format[1]) : national}`;
  }
  return text.replace(/[ -]/g, (c) => KEEP_TOGETHER[c]);
}

// The region a number with this calling code belongs to, as libphonenumber finds it: the one whose
// valid numbers it is among (`preferred` first, then the code's main region: +1 is the US before
// Canada), else `preferred` if it has the code, else the code's main region.
function regionFor(code, national, preferred) {
  const main = COUNTRIES.find((c) => c.region === META.main[code]);
  const sharing = COUNTRIES.filter((c) => c.dial === code);
  const order = [preferred, main, ...sharing].filter((c) => c && c.dial === code);
  return order.find((c) => !c.valid || regex(c.valid, true).test(national))
    || (preferred && preferred.dial === code ? preferred : main || sharing[0]);
}

// The digits after the country code, without a national prefix typed out of habit (0 in Germany,
// 1 in the US) where the number is one without it; Italy's leading 0 stays, as it is part of the number.
function nationalDigits(country, digits) {
  const { prefix, pattern } = country;
  if (prefix && digits.startsWith(prefix) && !regex(pattern, true).test(digits)
    && regex(pattern, true).test(digits.slice(prefix.length))) return digits.slice(prefix.length);
  return digits;
}

function defaultCountry() {
  const region = (navigator.language || "en-US").split("-")[1];
  return COUNTRIES.find((c) => c.region === region) || COUNTRIES.find((c) => c.region === "US");
}

// Field: { el, input, value() → "+E164", error(text), validate() → error text or null, set(phone),
// focus() }. A number typed or pasted with its country code (+44…, 0044…) moves the picker to it.
export function phoneField({ label = "Phone number", initial = null } = {}) {
  const selectId = id("country");
  const inputId = id("phone");
  const errorId = id("phone-error");
  const select = h(
    "select",
    { id: selectId, "aria-label": "Country code" },
    COUNTRIES.map((c) => h("option", { value: c.region }, `${c.name} (+${c.dial})`)),
  );
  const input = h("input", {
    id: inputId,
    type: "tel",
    inputmode: "tel",
    autocomplete: "tel",
    placeholder: "415 555 2671",
    "aria-describedby": errorId,
  });
  const errorEl = h("p", { id: errorId, class: "error", role: "alert" });
  select.value = defaultCountry().region;
  const country = () => COUNTRIES.find((c) => c.region === select.value);

  // The number as written: its own country code when it starts with + or 00, else the picker's.
  function read() {
    const written = input.value.trim();
    const digits = written.replace(/\D/g, "");
    const own = /^(\+|00)/.test(written) ? splitCode(written.startsWith("+") ? digits : digits.slice(2)) : null;
    if (own) {
      const found = regionFor(own[0], own[1], country());
      return { country: found, national: nationalDigits(found, own[1]), international: true };
    }
    return { country: country(), national: nationalDigits(country(), digits), international: false };
  }

  function set(phone) {
    const split = splitCode(String(phone).replace(/\D/g, ""));
    if (!split) return;
    select.value = regionFor(split[0], split[1], country()).region;
    input.value = split[1];
  }

  // A pasted or finished number with a country code: the picker shows it, the field the rest.
  function adopt() {
    const now = read();
    if (!now.international || !now.national) return;
    select.value = now.country.region;
    input.value = now.national;
  }
  input.addEventListener("change", adopt);
  input.addEventListener("input", (event) => {
    if (event.inputType === "insertFromPaste" || event.inputType === "insertReplacementText") adopt();
  });

  if (initial) set(initial);
  const el = h(
    "div",
    { class: "field phone-field" },
    h("label", { for: inputId }, label),
    h("div", { class: "phone-row" }, select, input),
    errorEl,
  );
  function error(text) {
    errorEl.textContent = text || "";
    input.setAttribute("aria-invalid", text ? "true" : "false");
  }
  function validate() {
    const { country: where, national } = read();
    if (!national) return "Enter your phone number.";
    if (/[^\d\s()+./-]/.test(input.value)) return "Use digits only (spaces and dashes are fine).";
    if (national.length < Math.min(...where.lengths)) return "This number is too short.";
    if (national.length > Math.max(...where.lengths)) return "This number is too long.";
    if (!regex(where.pattern, true).test(national)) return `This is not a phone number in ${where.name}.`;
    return null;
  }
  return {
    el,
    input,
    value: () => {
      const { country: where, national } = read();
      return `+${where.dial}${national}`;
    },
    error,
    validate,
    set,
    focus: () => input.focus(),
  };
}
