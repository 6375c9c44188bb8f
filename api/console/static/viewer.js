// An image at full size in a dialog (the thumbnail in the thread opens it): Escape, × or a click beside
// it closes it, and focus goes back to the thumbnail.
import { h } from "./dom.js";
import { openModal } from "./modal.js";

export function openViewer({ url, name }) {
  const image = h("img", { class: "viewer-image", src: url, alt: name });
  const save = h("a", { class: "button", href: url, download: name }, `Download ${name}`);
  return openModal({
    title: name,
    className: "viewer",
    content: h("div", { class: "viewer-body" }, image, h("div", { class: "actions" }, save)),
  });
}
