// A message's media in the thread: images as thumbnails that open full size (or a download when the
// browser cannot decode them, e.g. HEIC), audio inline, other files as downloads. Media is fetched with
// the API key (never in a URL) and kept as blob URLs that the thread revokes when it closes.
import { api, sessionPath } from "./api.js";
import { formatSize, h } from "./dom.js";
import { openViewer } from "./viewer.js";

const KINDS = { image: "Photo", video: "Video", document: "Document", sticker: "Sticker" };

function mediaPath(sessionId, message) {
  return sessionPath(sessionId, `/chats/${encodeURIComponent(message.chatId)}/messages/${encodeURIComponent(message.id)}/media`);
}

async function fetchUrl(thread, message) {
  const res = await api(mediaPath(thread.sessionId, message), { raw: true });
  const url = URL.createObjectURL(await res.blob());
  thread.urls.push(url);
  return url;
}

function fileName(message) {
  const media = message.media;
  if (media.fileName) return media.fileName;
  const ext = (media.mimetype || "").split(/[/;]/)[1] || "bin";
  return `${(KINDS[message.type] || "file").toLowerCase()}.${ext.trim()}`;
}

// A button that saves the file; `why` (optional) says why it is not shown inline.
function downloadButton(thread, message, why = "") {
  const name = fileName(message);
  const button = h("button", { type: "button", class: "download" }, `Download ${name} (${formatSize(message.media.size)})`);
  const error = h("p", { class: "error", role: "alert" });
  button.addEventListener("click", async () => {
    error.textContent = "";
    try {
      const url = await fetchUrl(thread, message);
      const link = h("a", { href: url, download: name, hidden: true });
      document.body.append(link);
      link.click();
      link.remove();
    } catch (err) {
      error.textContent = err.message;
    }
  });
  return h("div", { class: "file" }, why ? h("p", { class: "muted small" }, why) : null, button, error);
}

function image(thread, message) {
  const name = fileName(message);
  const img = h("img", { class: "media-image", alt: "" });
  const open = h("button", { type: "button", class: "thumb", "aria-label": `Open ${name} full size`, disabled: true }, img);
  const holder = h("div", { class: "media" }, open);
  let url = null;
  fetchUrl(thread, message)
    .then((made) => {
      url = made;
      img.src = url;
    })
    .catch((err) => holder.replaceChildren(h("p", { class: "error" }, err.message)));
  img.addEventListener("load", () => { open.disabled = false; });
  // Bytes this browser cannot decode (HEIC from an iPhone, a damaged file): offered as a download.
  img.addEventListener("error", () => {
    if (url) holder.replaceWith(downloadButton(thread, message, "This browser cannot show this picture."));
  });
  open.addEventListener("click", () => url && openViewer({ url, name }));
  return holder;
}

function audio(thread, message) {
  const media = message.media;
  const player = h("audio", { controls: true, preload: "none", "aria-label": media.ptt ? "Voice note" : "Audio" });
  fetchUrl(thread, message)
    .then((url) => { player.src = url; })
    .catch((err) => player.replaceWith(h("p", { class: "error" }, err.message)));
  return [h("p", { class: "muted small" }, media.ptt ? "Voice note" : "Audio", media.seconds ? ` · ${media.seconds} s` : ""), player];
}

export function mediaBlock(thread, message) {
  const media = message.media;
  if (!media) return null;
  if (message.fromMe) {
    // What this console sent: the bridge keeps no copy of it to download (404 media_not_available).
    const kinds = { ...KINDS, audio: media.ptt ? "Voice note" : "Audio" };
    const what = media.fileName || kinds[message.type] || "File";
    const length = media.seconds ? ` · ${media.seconds} s` : ` · ${formatSize(media.size)}`;
    return h("p", { class: "sent-media" }, `${what}${length}`);
  }
  if (message.type === "image") return image(thread, message);
  if (message.type === "audio") return audio(thread, message);
  return downloadButton(thread, message);
}
