"""Domain values → the waE2E messages we send. We build them ourselves from `upload()` results rather than
through neonize's `send_image`/`build_*` helpers: those fetch URLs with no timeout, sniff types with
libmagic, shell out to ffmpeg, and parse `@123…` in text as mentions (with an FFI call per group id).
"""

from __future__ import annotations

import base64
import io
import logging
import time
from typing import Any

from actors.clients.neonize.runtime import Lib
from actors.ports import OutgoingMedia, VoiceNote
from kernel.domain import Message, MessageType
from kernel.errors import UnsupportedMedia
from kernel.ids import to_jid

log = logging.getLogger(__name__)

THUMBNAIL_PX = 96
# OutgoingMedia.kind → (waE2E field, neonize MediaType member name) for the upload.
_KINDS = {
    MessageType.IMAGE: ("imageMessage", "MediaImage"),
    MessageType.VIDEO: ("videoMessage", "MediaVideo"),
    MessageType.AUDIO: ("audioMessage", "MediaAudio"),
    MessageType.DOCUMENT: ("documentMessage", "MediaDocument"),
}


def jid_proto(lib: Lib, value: str) -> Any:
    """A neonize JID for a phone number or JID string; InvalidRecipient for anything else."""
    user, _, server = to_jid(value).partition("@")
    return lib.proto.JID(User=user, Server=server, Device=0, RawAgent=0, Integrator=0, IsEmpty=False)


def reply_context(lib: Lib, quoted: Message, own_jid: str | None) -> Any:
    """The ContextInfo that makes a message a reply to `quoted` (the quoted bubble shows its content)."""
    if quoted.media_ref and "message" in quoted.media_ref:
        content = lib.e2e.Message.FromString(base64.b64decode(quoted.media_ref["message"]))
    else:
        content = lib.e2e.Message(conversation=quoted.text or "")
    participant = own_jid if quoted.from_me and own_jid else quoted.sender
    return lib.e2e.ContextInfo(stanzaID=quoted.id, participant=participant, quotedMessage=content)


def text_message(lib: Lib, text: str, context: Any | None) -> Any:
    if context is None:
        return lib.e2e.Message(conversation=text)
    return lib.e2e.Message(extendedTextMessage=lib.e2e.ExtendedTextMessage(text=text, contextInfo=context))


def media_type(lib: Lib, kind: MessageType) -> Any:
    """The neonize MediaType to upload `kind` as; UnsupportedMedia for what we do not send."""
    if kind not in _KINDS:
        raise UnsupportedMedia(f"cannot send {kind} media")
    return getattr(lib.enums.MediaType, _KINDS[kind][1])


def _uploaded(up: Any) -> dict[str, Any]:
    return {
        "URL": up.url,
        "directPath": up.DirectPath,
        "mediaKey": up.MediaKey,
        "fileEncSHA256": up.FileEncSHA256,
        "fileSHA256": up.FileSHA256,
        "fileLength": up.FileLength,
        "mediaKeyTimestamp": int(time.time()),
    }


def media_message(lib: Lib, media: OutgoingMedia, up: Any, context: Any | None) -> Any:
    """An image, video, document or audio message for an uploaded file."""
    field = _KINDS[media.kind][0]
    fields = _uploaded(up) | {"mimetype": media.mimetype}
    if media.kind in (MessageType.IMAGE, MessageType.VIDEO, MessageType.DOCUMENT) and media.caption:
        fields["caption"] = media.caption
    if media.kind is MessageType.DOCUMENT:
        name = media.file_name or "file"
        fields |= {"fileName": name, "title": name}
    if media.kind is MessageType.IMAGE:
        fields |= _image_preview(media.data)
    if media.kind is MessageType.AUDIO:
        fields["PTT"] = False
    if context is not None:
        fields["contextInfo"] = context
    cls = getattr(lib.e2e, field[0].upper() + field[1:])
    return lib.e2e.Message(**{field: cls(**fields)})


def voice_message(lib: Lib, note: VoiceNote, up: Any, context: Any | None) -> Any:
    """A voice note (push-to-talk audio): OGG/Opus, duration and waveform as given."""
    fields = _uploaded(up) | {"mimetype": note.mimetype, "seconds": note.seconds, "PTT": True}
    if note.waveform:
        fields["waveform"] = note.waveform
    if context is not None:
        fields["contextInfo"] = context
    return lib.e2e.Message(audioMessage=lib.e2e.AudioMessage(**fields))


def _image_preview(data: bytes) -> dict[str, Any]:
    """Width, height and a small JPEG thumbnail (shown before the download); {} if undecodable."""
    try:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            thumb = image.convert("RGB")
            thumb.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
            out = io.BytesIO()
            thumb.save(out, format="JPEG", quality=60)
    except Exception:
        log.debug("no thumbnail for an undecodable image", exc_info=True)
        return {}
    return {"width": width, "height": height, "JPEGThumbnail": out.getvalue()}
