// The public REST API, with the key and user id from sessionStorage sent as headers (never in a URL).
const KEY = "bridge.apiKey";
const USER = "bridge.userId";
const ADMIN = "bridge.admin";

// A user's own key acts as its user (X-User-Id then only repeats it); the admin key as `user`.
export function credentials() {
  const key = sessionStorage.getItem(KEY);
  const user = sessionStorage.getItem(USER);
  return key && user !== null ? { key, user, admin: sessionStorage.getItem(ADMIN) === "1" } : null;
}

export function saveCredentials(key, user, admin) {
  sessionStorage.setItem(KEY, key);
  sessionStorage.setItem(USER, user);
  sessionStorage.setItem(ADMIN, admin ? "1" : "0");
}

export function clearCredentials() {
  sessionStorage.removeItem(KEY);
  sessionStorage.removeItem(USER);
  sessionStorage.removeItem(ADMIN);
}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export const MAX_MEDIA_BYTES = 16 * 1024 * 1024;

const WORDS = {
  unauthorized: "The API key was refused. Sign out and enter the right key.",
  missing_user_id: "A user id is needed. Sign out and enter one.",
  user_mismatch: "This key belongs to another user than the one entered. Leave the user id empty.",
  admin_only: "Only the bridge's admin key may do this.",
  max_sessions_reached: "You already have 3 WhatsApp numbers, the most allowed. Disconnect one to add another.",
  invalid_slot: "That slot does not exist.",
  slot_taken: "That slot already holds a number. Reload the page.",
  phone_already_paired: "This phone is already linked to another slot or account. Disconnect it there first.",
  session_not_connected: "This number is not connected. Reconnect it in Settings, then try again.",
  already_connected: "This number is already connected.",
  no_qr_showing: "No QR code is showing right now. A new one comes shortly.",
  session_not_found: "This number no longer exists. Reload the page.",
  media_too_large: "The file is larger than 16 MB, the most WhatsApp takes.",
  unsupported_audio: "This recording cannot be turned into a voice note. Try recording again.",
  unsupported_media: "WhatsApp cannot send this kind of file.",
  invalid_phone: "That phone number is not valid. Check the country code and the digits.",
  invalid_recipient: "That recipient is not a phone number or WhatsApp id.",
  not_on_whatsapp: "That number is not on WhatsApp.",
  send_failed: "WhatsApp refused the message. Try again.",
  send_outcome_unknown: "WhatsApp did not confirm in time; the message may or may not have gone out.",
};

export function describe(status, code, message, retryAfter) {
  if (code && WORDS[code]) return WORDS[code];
  if (status === 503) {
    const wait = retryAfter ? ` Try again in ${retryAfter} s.` : " Try again shortly.";
    return `The bridge is busy or one of its services is down.${wait}`;
  }
  if (status === 413) return WORDS.media_too_large;
  return message || `The request failed (HTTP ${status}).`;
}

export async function api(path, { method = "GET", json, form, raw = false } = {}) {
  const creds = credentials();
  const headers = creds ? { "X-API-Key": creds.key } : {};
  if (creds && creds.user) headers["X-User-Id"] = creds.user;
  let body;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (form !== undefined) {
    body = form;
  }
  let res;
  try {
    res = await fetch(path, { method, headers, body, cache: "no-store" });
  } catch {
    throw new ApiError(0, "network", "The bridge cannot be reached. Check that it is running.");
  }
  if (!res.ok) {
    let code;
    let message;
    try {
      const err = (await res.json()).error || {};
      code = err.code;
      message = err.message;
    } catch {
      /* not JSON: the status says enough */
    }
    throw new ApiError(res.status, code, describe(res.status, code, message, res.headers.get("Retry-After")));
  }
  if (raw) return res;
  if (res.status === 204) return null;
  return res.json();
}

// The OpenAPI document says which optional routes this bridge has (e.g. marking a chat read).
let paths;
export async function hasRoute(path, method) {
  if (paths === undefined) {
    try {
      const res = await fetch("/openapi.json");
      paths = res.ok ? (await res.json()).paths || {} : {};
    } catch {
      paths = {};
    }
  }
  return Boolean(paths[path] && paths[path][method]);
}

export function sessionPath(sessionId, rest = "") {
  return `/sessions/${encodeURIComponent(sessionId)}${rest}`;
}
