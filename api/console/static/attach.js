// The file chosen to send, shown before it goes: a picture's preview (or the file's name and size) and
// an explicit caption field. Nothing is uploaded until Send; Cancel, Escape or × send nothing.
import { formatSize, h, id } from "./dom.js";
import { openModal } from "./modal.js";

// Resolves {caption} when the user sends, null when they cancel.
export function previewFile(file, caption = "") {
  return new Promise((resolve) => {
    let answer = null;
    const url = file.type.startsWith("image/") ? URL.createObjectURL(file) : null;
    const captionId = id("caption");
    const field = h("input", { id: captionId, type: "text", value: caption, placeholder: "Add a caption", maxlength: "1024", autocomplete: "off" });
    const send = h("button", { type: "submit", class: "primary" }, "Send");
    const cancel = h("button", { type: "button" }, "Cancel");
    const shown = url ? h("img", { class: "attach-image", src: url, alt: `Preview of ${file.name}` }) : null;
    // A picture the browser cannot decode (HEIC) still goes out: its name and size say what it is.
    if (shown) shown.addEventListener("error", () => shown.remove());
    const form = h("form", { class: "dialog-body attach" },
      shown,
      h("p", { class: "attach-file" }, file.name, h("span", { class: "muted small" }, ` · ${formatSize(file.size)}`)),
      h("label", { for: captionId }, "Caption"),
      field,
      h("div", { class: "actions" }, cancel, send));
    const modal = openModal({
      title: "Send a file",
      content: form,
      onClose: () => {
        if (url) URL.revokeObjectURL(url);
        resolve(answer);
      },
    });
    field.focus();
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      answer = { caption: field.value.trim() };
      modal.close("send");
    });
    cancel.addEventListener("click", () => modal.close("cancelled"));
  });
}
