"""What a file is, from its bytes (magic numbers and a look inside containers), and how to send it.

A declared mimetype or file name never overrides what the content says; it only refines content that
many formats share (a ZIP, an OLE compound file, plain text).
"""

from __future__ import annotations

import codecs
import io
import mimetypes
import zipfile
from dataclasses import dataclass
from pathlib import PurePosixPath

from actors.media import containers
from actors.ports import OutgoingMedia
from kernel.domain import MessageType
from kernel.errors import UnsupportedMedia

OCTET_STREAM = "application/octet-stream"
OPUS_OGG = "audio/ogg; codecs=opus"

IMAGE, VIDEO, AUDIO, DOCUMENT = MessageType.IMAGE, MessageType.VIDEO, MessageType.AUDIO, MessageType.DOCUMENT

# What WhatsApp shows inline (its documented media types); anything else is sent as a document.
WHATSAPP_INLINE: dict[MessageType, frozenset[str]] = {
    IMAGE: frozenset({"image/jpeg", "image/png"}),
    VIDEO: frozenset({"video/mp4", "video/3gpp"}),
    AUDIO: frozenset({"audio/aac", "audio/amr", "audio/mpeg", "audio/mp4", OPUS_OGG}),
}

_OOXML = "application/vnd.openxmlformats-officedocument."
_OFFICE_DIRS = {
    "word/": _OOXML + "wordprocessingml.document",
    "xl/": _OOXML + "spreadsheetml.sheet",
    "ppt/": _OOXML + "presentationml.presentation",
}
_TEXT_TYPES = frozenset({"application/json", "application/xml", "application/javascript", "application/x-sh"})
_OLE_TYPES = frozenset({"application/msword", "application/x-msi", "application/vnd.visio"})


@dataclass(frozen=True, slots=True)
class Sniffed:
    """What the content is. `generic` marks content many formats share, which a declared type may refine."""

    kind: MessageType
    mimetype: str
    generic: bool = False


def sniff(data: bytes) -> Sniffed | None:
    """The kind and mimetype of `data` from its content, or None if it is not recognised."""
    head = data[:16]
    if head.startswith(b"\xff\xd8\xff"):
        return Sniffed(IMAGE, "image/jpeg")
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return Sniffed(IMAGE, "image/png")
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return Sniffed(IMAGE, "image/gif")
    if head.startswith(b"RIFF") and len(head) >= 12:
        return {
            b"WEBP": Sniffed(IMAGE, "image/webp"),
            b"WAVE": Sniffed(AUDIO, "audio/wav"),
            b"AVI ": Sniffed(VIDEO, "video/x-msvideo"),
        }.get(head[8:12])
    if head[4:8] == b"ftyp":
        return _sniff_iso(data)
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return _sniff_matroska(data)
    if head.startswith(b"OggS"):
        return _sniff_ogg(data)
    if head.startswith(b"ID3"):
        start = _skip_id3(data)
        if data[start : start + 4] == b"fLaC":
            return Sniffed(AUDIO, "audio/flac")
        if containers.frames_in_sync(data, start, "adts"):
            return Sniffed(AUDIO, "audio/aac")
        return Sniffed(AUDIO, "audio/mpeg")
    if head.startswith(b"fLaC"):
        return Sniffed(AUDIO, "audio/flac")
    if head.startswith(b"#!AMR-WB\n"):
        return Sniffed(AUDIO, "audio/amr-wb")
    if head.startswith(b"#!AMR\n"):
        return Sniffed(AUDIO, "audio/amr")
    if containers.frames_in_sync(data, 0, "adts"):
        return Sniffed(AUDIO, "audio/aac")
    if containers.frames_in_sync(data, 0, "mpeg"):
        return Sniffed(AUDIO, "audio/mpeg")
    if head.startswith(b"%PDF-"):
        return Sniffed(DOCUMENT, "application/pdf")
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return _sniff_zip(data)
    if head.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        return Sniffed(DOCUMENT, "application/x-ole-storage", generic=True)
    if _looks_like_text(data):
        return Sniffed(DOCUMENT, "text/plain", generic=True)
    return None


def _sniff_iso(data: bytes) -> Sniffed:
    brand = data[8:12]
    ftyp_end = min(int.from_bytes(data[:4], "big"), len(data), 256)
    compatible = {data[i : i + 4] for i in range(16, ftyp_end - 3, 4)}
    if brand == b"avif" or (brand in (b"mif1", b"msf1") and b"avif" in compatible):
        return Sniffed(IMAGE, "image/avif")
    if brand in (b"heic", b"heix", b"heim", b"heis", b"mif1", b"msf1"):
        return Sniffed(IMAGE, "image/heic")
    handlers = containers.iso_handlers(data)
    if brand.startswith((b"3gp", b"3gg")):
        video, audio = "video/3gpp", "audio/3gpp"
    elif brand.startswith(b"3g2"):
        video, audio = "video/3gpp2", "audio/3gpp2"
    elif brand == b"qt  ":
        video, audio = "video/quicktime", "audio/quicktime"  # may hold PCM: not inline audio
    else:
        video, audio = "video/mp4", "audio/mp4"
    audio_brand = brand in (b"M4A ", b"M4B ", b"M4P ", b"F4A ", b"F4B ")
    if b"vide" in handlers or (not handlers and not audio_brand):
        return Sniffed(VIDEO, video)
    return Sniffed(AUDIO, audio)


def _sniff_matroska(data: bytes) -> Sniffed:
    doctype, tracks = containers.ebml_tracks(data)
    family = "webm" if doctype == "webm" else "x-matroska"
    # Without a readable Tracks element assume video: the player copes, a voice recorder never does that.
    if 1 in tracks or 2 not in tracks:
        return Sniffed(VIDEO, f"video/{family}")
    return Sniffed(AUDIO, f"audio/{family}")


def _sniff_ogg(data: bytes) -> Sniffed:
    first = 27 + (data[26] if len(data) > 26 else 0)
    packet = data[first : first + 8]
    if packet == b"OpusHead":
        return Sniffed(AUDIO, OPUS_OGG)
    if packet.startswith(b"\x80theora"):
        return Sniffed(VIDEO, "video/ogg")
    return Sniffed(AUDIO, "audio/ogg")


def _skip_id3(data: bytes) -> int:
    """Where the audio starts after the leading ID3v2 tags."""
    pos = 0
    while data[pos : pos + 3] == b"ID3" and pos + 10 <= len(data):
        size = 0
        for byte in data[pos + 6 : pos + 10]:
            size = (size << 7) | (byte & 0x7F)
        pos += 10 + size + (10 if data[pos + 5] & 0x10 else 0)
    return pos


def _sniff_zip(data: bytes) -> Sniffed:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = archive.namelist()
            # ODF and EPUB name their own type in a small stored first entry.
            if names[:1] == ["mimetype"] and archive.getinfo("mimetype").file_size < 128:
                declared = archive.read("mimetype").decode("ascii", "replace").strip()
                if declared.startswith(("application/vnd.oasis.opendocument.", "application/epub+zip")):
                    return Sniffed(DOCUMENT, declared)
    except (zipfile.BadZipFile, ValueError, KeyError, OSError, NotImplementedError):
        return Sniffed(DOCUMENT, "application/zip", generic=True)
    if "[Content_Types].xml" in names:
        for prefix, mimetype in _OFFICE_DIRS.items():
            if any(name.startswith(prefix) for name in names):
                return Sniffed(DOCUMENT, mimetype)
    return Sniffed(DOCUMENT, "application/zip", generic=True)


def _looks_like_text(data: bytes) -> bool:
    sample = data[:4096]
    if not sample:
        return False
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(sample, final=len(data) <= len(sample))
    except UnicodeDecodeError:
        return False
    return all(ch.isprintable() or ch in "\t\n\r\f\x1b" for ch in text.lstrip("\ufeff"))


def _family_accepts(sniffed: Sniffed, candidate: str) -> bool:
    """True if `candidate` is a document type consistent with generic content `sniffed`."""
    if candidate.split("/")[0] in ("image", "audio", "video") or candidate == OCTET_STREAM:
        return False
    if sniffed.mimetype == "text/plain":
        return (
            candidate.startswith("text/") or candidate.endswith(("+xml", "+json")) or candidate in _TEXT_TYPES
        )
    if sniffed.mimetype == "application/zip":
        return candidate.endswith("+zip") or candidate.startswith(("application/vnd.", "application/java"))
    return candidate.startswith("application/vnd.ms-") or candidate in _OLE_TYPES


def _bare(mimetype: str | None) -> str | None:
    """The mimetype lower-cased without parameters, or None if it is empty or not a type/subtype."""
    if not mimetype:
        return None
    bare = mimetype.split(";")[0].strip().lower()
    return bare if "/" in bare else None


def classify(data: bytes, declared_mimetype: str | None, file_name: str | None) -> tuple[MessageType, str]:
    """The kind and mimetype of a file from its content; unknown content is an octet-stream document."""
    sniffed = sniff(data)
    if sniffed is None:
        return DOCUMENT, OCTET_STREAM
    if sniffed.generic:
        guessed = mimetypes.guess_type(file_name, strict=False)[0] if file_name else None
        for candidate in (_bare(declared_mimetype), _bare(guessed)):
            if candidate and _family_accepts(sniffed, candidate):
                return DOCUMENT, candidate
        if sniffed.mimetype == "application/x-ole-storage":
            return DOCUMENT, OCTET_STREAM
    return sniffed.kind, sniffed.mimetype


def safe_file_name(file_name: str | None) -> str | None:
    """The last path component of a client-supplied file name, without control characters."""
    if not file_name:
        return None
    name = PurePosixPath(file_name.replace("\\", "/")).name
    name = "".join(ch for ch in name if ch.isprintable()).strip()[:255]
    return name if name not in ("", ".", "..") else None


def outgoing_media(
    data: bytes,
    declared_mimetype: str | None = None,
    file_name: str | None = None,
    caption: str | None = None,
) -> OutgoingMedia:
    """The `OutgoingMedia` for an upload: classified, and a document unless WhatsApp shows it inline."""
    if not data:
        raise UnsupportedMedia("The file is empty")
    kind, mimetype = classify(data, declared_mimetype, file_name)
    if mimetype not in WHATSAPP_INLINE.get(kind, frozenset()):
        kind = DOCUMENT
    name = safe_file_name(file_name)
    if name is None and kind is DOCUMENT:
        name = "file" + (mimetypes.guess_extension(mimetype.split(";")[0], strict=False) or "")
    return OutgoingMedia(data=data, kind=kind, mimetype=mimetype, file_name=name, caption=caption or None)
