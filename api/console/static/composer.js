// The composer: text (Enter sends, Shift+Enter is a new line), possibly as a reply to a message (quoted),
// a file (16 MB checked, then previewed with its caption before upload) and a voice note recorded with
// MediaRecorder and sent through `send/audio` (the bridge makes it OGG/Opus).
import { api, MAX_MEDIA_BYTES, sessionPath } from "./api.js";
import { previewFile } from "./attach.js";
import { formatSize, h, id } from "./dom.js";

function recorderType() {
  const wanted = ["audio/webm;codecs=opus", "audio/ogg;codecs=opus", "audio/webm", "audio/mp4"];
  return wanted.find((type) => window.MediaRecorder && MediaRecorder.isTypeSupported(type)) || "";
}

// Paper clip and microphone icons (24 × 24 paths drawn for the console).
const CLIP = "M16.5 6v11.5a4 4 0 0 1-8 0V5a2.5 2.5 0 0 1 5 0v10.5a1 1 0 0 1-2 0V6H10v9.5a2.5 2.5 0 0 0 5 0V5a4 4 0 0 0-8 0v12.5a5.5 5.5 0 0 0 11 0V6z";
const MIC = "M12 14a3 3 0 0 0 3-3V5a3 3 0 0 0-6 0v6a3 3 0 0 0 3 3zm5.3-3a5.3 5.3 0 0 1-10.6 0H5a7 7 0 0 0 6 6.9V21h2v-3.1A7 7 0 0 0 19 11z";

function icon(d) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  const path = document.createElementNS(ns, "path");
  path.setAttribute("d", d);
  svg.append(path);
  return svg;
}

// A draft is kept per chat in this tab's sessionStorage: a reload or another chat in between keeps it.
const DRAFT = "bridge.draft.";

export function composer({ target, onSent, draftKey = null }) {
  const textId = id("compose");
  const fileId = id("attach");
  const text = h("textarea", { id: textId, rows: 1, placeholder: "Type a message", enterkeyhint: "send" });
  const file = h("input", { id: fileId, type: "file", class: "visually-hidden" });
  const attach = h("label", { for: fileId, class: "button icon", title: "Attach a file" }, icon(CLIP), h("span", { class: "visually-hidden" }, "Attach a file"));
  const send = h("button", { type: "submit", class: "primary" }, "Send");
  const record = h("button", { type: "button", class: "icon", "aria-label": "Record a voice note", title: "Record a voice note" }, icon(MIC));
  const error = h("p", { class: "error", role: "alert" });
  const status = h("p", { class: "muted small", role: "status" });
  const recording = h("div", { class: "recording", hidden: true });
  // The message being answered (a reply quotes it): shown above the box until sent or cancelled.
  let replyTo = null;
  const replyText = h("p", { class: "replying-text" });
  const replyCancel = h("button", { type: "button", class: "icon", "aria-label": "Cancel reply", title: "Cancel reply" }, "×");
  const replying = h("div", { class: "replying", hidden: true }, replyText, replyCancel);
  function setReply(message, label = null) {
    replyTo = message ? message.id : null;
    replying.hidden = !message;
    replyText.replaceChildren(...(message ? [h("span", { class: "quote-author" }, "Replying to ", label.author), h("span", { class: "quote-text", dir: "auto" }, label.text)] : []));
  }
  replyCancel.addEventListener("click", () => {
    setReply(null);
    text.focus();
  });
  const form = h("form", { class: "composer", "aria-label": "Reply" },
    h("label", { for: textId, class: "visually-hidden" }, "Message"),
    recording,
    replying,
    h("div", { class: "compose-row" }, attach, file, text, record, send),
    error,
    status,
  );
  let busy = false;
  if (draftKey) text.value = sessionStorage.getItem(DRAFT + draftKey) || "";
  function keepDraft() {
    if (!draftKey) return;
    if (text.value) sessionStorage.setItem(DRAFT + draftKey, text.value);
    else sessionStorage.removeItem(DRAFT + draftKey);
  }
  text.addEventListener("input", keepDraft);
  // The box grows with what is typed, up to about six lines, then scrolls.
  function grow() {
    text.style.height = "auto";
    text.style.height = `${text.scrollHeight + 2}px`;
  }
  text.addEventListener("input", grow);
  requestAnimationFrame(grow);
  // A box made narrower (a phone turned, a window resized) wraps the words onto more lines: grow again,
  // or a restored draft is cut off. Grown in the next frame: resizing inside the observer's own call
  // would be a ResizeObserver loop.
  let width = 0;
  new ResizeObserver(([entry]) => {
    if (entry.contentRect.width === width) return;
    width = entry.contentRect.width;
    requestAnimationFrame(grow);
  }).observe(text);

  function fail(err) {
    error.textContent = err.message || String(err);
  }

  async function run(label, task) {
    if (busy) return;
    busy = true;
    error.textContent = "";
    status.textContent = label;
    send.disabled = true;
    try {
      const sent = await task(target());
      status.textContent = "";
      onSent?.(sent);
      return sent;
    } catch (err) {
      status.textContent = "";
      fail(err);
    } finally {
      busy = false;
      send.disabled = false;
    }
  }

  function sendText() {
    const body = text.value.trim();
    if (!body || busy) return;
    // Emptied now, not after the answer: what the user types meanwhile is the next message.
    text.value = "";
    keepDraft();
    grow();
    const quoted = replyTo;
    setReply(null);
    run("Sending…", ({ sessionId, to }) =>
      api(sessionPath(sessionId, "/send/text"), { method: "POST", json: quoted ? { to, text: body, quotedId: quoted } : { to, text: body } }),
    ).then((sent) => {
      if (!sent && !text.value) text.value = body;
      keepDraft();
    });
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    sendText();
  });
  text.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      sendText();
    } else if (event.key === "Escape" && replyTo) {
      event.preventDefault();
      setReply(null);
    }
  });

  file.addEventListener("change", async () => {
    const chosen = file.files[0];
    file.value = "";
    if (!chosen) return;
    error.textContent = "";
    if (chosen.size > MAX_MEDIA_BYTES) {
      error.textContent = `“${chosen.name}” is ${formatSize(chosen.size)}; WhatsApp takes files up to 16 MB.`;
      return;
    }
    // What was typed becomes the caption's first draft; the file goes only after Send.
    const draft = text.value.trim();
    const choice = await previewFile(chosen, draft);
    if (!choice) return;
    const { caption } = choice;
    run(`Sending ${chosen.name}…`, ({ sessionId, to }) => {
      const form = new FormData();
      form.append("to", to);
      form.append("file", chosen, chosen.name);
      if (caption) form.append("caption", caption);
      return api(sessionPath(sessionId, "/send/media"), { method: "POST", form });
    }).then((sent) => {
      // The typed words went out as the caption: they are no longer a draft.
      if (sent && draft && caption === draft && text.value.trim() === draft) text.value = "";
      keepDraft();
      grow();
    });
  });

  // Voice notes.
  let recorder = null;
  let chunks = [];
  let started = 0;
  let clock = null;
  let discard = false;
  const elapsed = h("span", { class: "elapsed", "aria-live": "off" }, "0:00");
  const stop = h("button", { type: "button", class: "primary" }, "Stop and send");
  const cancel = h("button", { type: "button" }, "Cancel");
  recording.append(h("span", { class: "dot", "aria-hidden": "true" }), h("span", {}, "Recording "), elapsed, stop, cancel);

  record.addEventListener("click", async () => {
    error.textContent = "";
    if (!navigator.mediaDevices || !window.MediaRecorder) {
      error.textContent = "This browser cannot record audio.";
      return;
    }
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    } catch {
      error.textContent = "The microphone is not available (allow it in the browser to record).";
      return;
    }
    const mimeType = recorderType();
    recorder = new MediaRecorder(stream, mimeType ? { mimeType } : {});
    chunks = [];
    discard = false;
    recorder.addEventListener("dataavailable", (event) => {
      if (event.data.size) chunks.push(event.data);
    });
    recorder.addEventListener("stop", () => {
      stream.getTracks().forEach((track) => track.stop());
      clearInterval(clock);
      recording.hidden = true;
      record.disabled = false;
      record.focus();
      if (discard || !chunks.length) return;
      const blob = new Blob(chunks, { type: recorder.mimeType || "audio/webm" });
      const ext = blob.type.includes("ogg") ? "ogg" : blob.type.includes("mp4") ? "m4a" : "webm";
      run("Sending voice note…", ({ sessionId, to }) => {
        const form = new FormData();
        form.append("to", to);
        form.append("file", blob, `voice-note.${ext}`);
        return api(sessionPath(sessionId, "/send/audio"), { method: "POST", form });
      });
    });
    recorder.start(250);
    started = Date.now();
    elapsed.textContent = "0:00";
    clock = setInterval(() => {
      const s = Math.floor((Date.now() - started) / 1000);
      elapsed.textContent = `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
    }, 250);
    recording.hidden = false;
    record.disabled = true;
    stop.focus();
  });
  stop.addEventListener("click", () => recorder && recorder.state !== "inactive" && recorder.stop());
  cancel.addEventListener("click", () => {
    discard = true;
    if (recorder && recorder.state !== "inactive") recorder.stop();
  });

  return {
    el: form,
    focus: () => text.focus(),
    reply: (message, label) => {
      setReply(message, label);
      text.focus();
    },
  };
}
