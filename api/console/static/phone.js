// A phone number field with a country code picker; values leave it in E.164 (+<country code><number>).
import { h, id } from "./dom.js";

// [ISO region, dialling code, name]: the picker's list, most used first by region name order.
export const COUNTRIES = [
  ["AR", "54", "Argentina"], ["AU", "61", "Australia"], ["AT", "43", "Austria"], ["BE", "32", "Belgium"],
  ["BR", "55", "Brazil"], ["CA", "1", "Canada"], ["CL", "56", "Chile"], ["CN", "86", "China"],
  ["CO", "57", "Colombia"], ["DK", "45", "Denmark"], ["EG", "20", "Egypt"], ["FI", "358", "Finland"],
  ["FR", "33", "France"], ["DE", "49", "Germany"], ["GH", "233", "Ghana"], ["GR", "30", "Greece"],
  ["HK", "852", "Hong Kong"], ["IN", "91", "India"], ["ID", "62", "Indonesia"], ["IE", "353", "Ireland"],
  ["IL", "972", "Israel"], ["IT", "39", "Italy"], ["JP", "81", "Japan"], ["KE", "254", "Kenya"],
  ["MY", "60", "Malaysia"], ["MX", "52", "Mexico"], ["MA", "212", "Morocco"], ["NL", "31", "Netherlands"],
  ["NZ", "64", "New Zealand"], ["NG", "234", "Nigeria"], ["NO", "47", "Norway"], ["PK", "92", "Pakistan"],
  ["PE", "51", "Peru"], ["PH", "63", "Philippines"], ["PL", "48", "Poland"], ["PT", "351", "Portugal"],
  ["RO", "40", "Romania"], ["SA", "966", "Saudi Arabia"], ["SG", "65", "Singapore"],
  ["ZA", "27", "South Africa"], ["KR", "82", "South Korea"], ["ES", "34", "Spain"], ["SE", "46", "Sweden"],
  ["CH", "41", "Switzerland"], ["TR", "90", "Turkey"], ["UA", "380", "Ukraine"],
  ["AE", "971", "United Arab Emirates"], ["GB", "44", "United Kingdom"], ["US", "1", "United States"],
  ["VN", "84", "Vietnam"],
];

function defaultRegion() {
  const tag = navigator.language || "en-US";
  const region = tag.split("-")[1];
  return COUNTRIES.some((c) => c[0] === region) ? region : "US";
}

// "+14155552671" → "+1 415 555 2671" (the country code found in the list, the rest in groups).
export function formatPhone(phone) {
  if (!phone) return "";
  const digits = phone.replace(/\D/g, "");
  const dial = COUNTRIES.map((c) => c[1])
    .filter((code) => digits.startsWith(code))
    .sort((a, b) => b.length - a.length)[0];
  if (!dial) return `+${digits}`;
  const rest = digits.slice(dial.length);
  const groups = rest.length === 10 ? [rest.slice(0, 3), rest.slice(3, 6), rest.slice(6)] : rest.match(/.{1,4}/g) || [];
  return `+${dial} ${groups.join(" ")}`;
}

// Field: { el, value() → "+E164" or null, error(text), validate() → error text or null, set(phone),
// focus() }.
export function phoneField({ label = "Phone number", initial = null } = {}) {
  const selectId = id("country");
  const inputId = id("phone");
  const errorId = id("phone-error");
  const select = h(
    "select",
    { id: selectId, "aria-label": "Country code" },
    COUNTRIES.map(([region, dial, name]) => h("option", { value: `${region}:${dial}` }, `${name} (+${dial})`)),
  );
  const input = h("input", {
    id: inputId,
    type: "tel",
    inputmode: "tel",
    autocomplete: "tel-national",
    placeholder: "415 555 2671",
    "aria-describedby": errorId,
  });
  const errorEl = h("p", { id: errorId, class: "error", role: "alert" });
  const region = defaultRegion();
  select.value = COUNTRIES.find((c) => c[0] === region).slice(0, 2).join(":");
  function set(phone) {
    const digits = phone.replace(/\D/g, "");
    const match = COUNTRIES.filter((c) => digits.startsWith(c[1])).sort((a, b) => b[1].length - a[1].length)[0];
    if (match) {
      select.value = `${match[0]}:${match[1]}`;
      input.value = digits.slice(match[1].length);
    }
  }
  if (initial) set(initial);
  const el = h(
    "div",
    { class: "field phone-field" },
    h("label", { for: inputId }, label),
    h("div", { class: "phone-row" }, select, input),
    errorEl,
  );
  function dial() {
    return select.value.split(":")[1];
  }
  function national() {
    return input.value.replace(/\D/g, "").replace(/^0+/, "");
  }
  function error(text) {
    errorEl.textContent = text || "";
    input.setAttribute("aria-invalid", text ? "true" : "false");
  }
  function validate() {
    const digits = national();
    if (!digits) return "Enter your phone number.";
    if (/[^\d\s()+.-]/.test(input.value)) return "Use digits only (spaces and dashes are fine).";
    const total = dial().length + digits.length;
    if (digits.length < 4 || total < 8) return "This number is too short.";
    if (total > 15) return "This number is too long.";
    return null;
  }
  return {
    el,
    input,
    value: () => `+${dial()}${national()}`,
    error,
    validate,
    set,
    focus: () => input.focus(),
  };
}
