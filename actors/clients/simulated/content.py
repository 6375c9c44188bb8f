"""What the simulated network makes up: QR payloads, pairing codes, message ids, history and media bytes."""

from __future__ import annotations

import base64
import hashlib
import random
import secrets
import struct
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from kernel.domain import Media, Message, MessageStatus, MessageType
from kernel.errors import InvalidInput, MediaNotAvailable
from kernel.events import HistoryConversation
from kernel.ids import GROUP_SERVER, USER_SERVER

# whatsmeow's linking-code alphabet (Crockford-like: no 0, I, O, U).
PAIRING_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTVWXYZ"
MAX_MEDIA_SIZE = 2 * 1024 * 1024 * 1024  # WhatsApp's document limit
CHUNK_BYTES = 256 * 1024

_REF_VERSION = "sim-1"
_PEOPLE = (
    "Alice Martin", "Bruno Costa", "Chiara Rossi", "Dmitri Volkov", "Emeka Obi", "Fatima Zahra",
    "Grace Lee", "Hiro Tanaka", "Ingrid Berg", "Jonas Weber", "Kavya Nair", "Lucas Moreau",
)  # fmt: skip
_GROUPS = ("Family", "Weekend hike", "Book club", "Project Atlas", "Flat 4B", "Football Tuesdays")
_LINES = (
    "Are we still on for tomorrow?", "Running 10 minutes late, sorry!", "Sounds good 👍",
    "Can you send me the address?", "Happy birthday!! 🎉", "I'll call you after the meeting",
    "Did you see the photos?", "Thanks a lot, really appreciated", "Let's do Saturday instead",
    "On my way", "Who's bringing the snacks?", "The invoice is attached to the email",
    "haha yes exactly", "Good night!",
)  # fmt: skip

_DEFAULT_MIMETYPE = {
    MessageType.IMAGE: "image/jpeg",
    MessageType.VIDEO: "video/mp4",
    MessageType.AUDIO: "audio/ogg; codecs=opus",
    MessageType.DOCUMENT: "application/pdf",
    MessageType.STICKER: "image/webp",
    MessageType.OTHER: "application/octet-stream",
}
_DEFAULT_SIZE = {
    MessageType.IMAGE: 48_213,
    MessageType.VIDEO: 853_771,
    MessageType.AUDIO: 9_412,
    MessageType.DOCUMENT: 120_330,
    MessageType.STICKER: 18_604,
    MessageType.OTHER: 4_096,
}
_OPUS_HEAD = b"OpusHead\x01\x01\x38\x01\x80\xbb\x00\x00\x00\x00\x00"
_MAGIC = {
    "image/jpeg": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00",
    "image/png": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
    "image/gif": b"GIF89a",
    "video/mp4": b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom",
    "video/3gpp": b"\x00\x00\x00\x14ftyp3gp4\x00\x00\x00\x003gp4",
    "audio/mp4": b"\x00\x00\x00\x18ftypM4A \x00\x00\x00\x00M4A isom",
    "audio/mpeg": b"ID3\x04\x00\x00\x00\x00\x00\x00",
    "audio/aac": b"\xff\xf1\x50\x80\x02\x1f\xfc",
    "application/pdf": b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n",
    "application/zip": b"PK\x03\x04\x14\x00\x00\x00",
}


@dataclass(frozen=True, slots=True)
class HistoryPlan:
    """The shape of a history sync: how many chats, messages per chat, and chunks to send them in."""

    chats: int = 3
    messages_per_chat: int = 4
    chunks: int = 2


def now() -> datetime:
    """The current UTC time at millisecond precision (what whatsmeow's timestamps carry)."""
    t = datetime.now(UTC)
    return t.replace(microsecond=t.microsecond // 1000 * 1000)


def _b64(n: int) -> str:
    return base64.b64encode(secrets.token_bytes(n)).decode()


def qr_keys() -> str:
    """The noise key, identity key and adv secret of one would-be device, as whatsmeow joins them."""
    return ",".join((_b64(32), _b64(32), _b64(32)))


def qr_payload(keys: str) -> str:
    """A QR payload `2@<ref>,<noise>,<identity>,<adv>`: the ref is fresh per code, the keys per device."""
    return f"2@{_b64(48)},{keys}"


def pairing_code() -> str:
    return "".join(secrets.choice(PAIRING_ALPHABET) for _ in range(8))


def message_id() -> str:
    """A message id shaped like whatsmeow's (`3EB0` + hex)."""
    return "3EB0" + secrets.token_hex(8).upper()


def group_participant(group_jid: str, salt: str = "") -> str:
    """A stable member of a simulated group (groups send from their members, never from the group)."""
    digest = hashlib.sha256((group_jid + salt).encode()).hexdigest()
    return f"1555{int(digest[:12], 16) % 10_000_000:07d}@{USER_SERVER}"


# ------------------------------------------------------------------------------------------ media


def incoming_media(seed: str, spec: Mapping[str, Any]) -> tuple[MessageType, Media, dict[str, Any]]:
    """The type, media info and download ref of an incoming message's `{type, mimetype, fileName, size}`."""
    try:
        kind = MessageType(str(spec.get("type", "document")))
    except ValueError as err:
        raise InvalidInput(f"unknown media type {spec.get('type')!r}") from err
    if kind is MessageType.TEXT:
        raise InvalidInput("media type cannot be text")
    mimetype = str(spec.get("mimetype") or _DEFAULT_MIMETYPE[kind])
    size = spec.get("size") or _DEFAULT_SIZE[kind]
    if not isinstance(size, int) or not 0 < size <= MAX_MEDIA_SIZE:
        raise InvalidInput(f"media size must be 1..{MAX_MEDIA_SIZE} bytes")
    file_name = spec.get("file_name", spec.get("fileName"))
    if file_name is None and kind is MessageType.DOCUMENT:
        file_name = "document.pdf" if mimetype == "application/pdf" else "file"
    seconds = spec.get("seconds")
    if seconds is None and kind in (MessageType.AUDIO, MessageType.VIDEO):
        seconds = max(1, size // (4_000 if kind is MessageType.AUDIO else 100_000))
    ptt = bool(spec.get("ptt", kind is MessageType.AUDIO and mimetype.startswith("audio/ogg")))
    video_note = kind is MessageType.VIDEO and bool(spec.get("video_note", spec.get("videoNote", False)))
    media = Media(
        mimetype=mimetype, file_name=file_name, size=size, seconds=seconds, ptt=ptt, video_note=video_note
    )
    ref = {"sim": _REF_VERSION, "seed": seed, "size": size, "mimetype": mimetype}
    return kind, media, ref


def media_size(ref: Mapping[str, Any] | None) -> int:
    """The size of the file behind a media ref; MediaNotAvailable if it is not one of ours."""
    if not ref or ref.get("sim") != _REF_VERSION:
        raise MediaNotAvailable()
    return int(ref["size"])


def media_chunks(ref: Mapping[str, Any] | None, chunk_size: int = CHUNK_BYTES) -> Iterator[bytes]:
    """The bytes behind a media ref, made as they are read: deterministic, of the declared size, starting
    with the mimetype's header. Memory stays at one chunk whatever the size."""
    size = media_size(ref)
    assert ref is not None
    mimetype, seed = str(ref["mimetype"]), str(ref["seed"])
    chunk_size = max(4, chunk_size - chunk_size % 4)  # whole 32-bit words: chunked output == one call
    if mimetype.startswith("text/"):
        line = f"Simulated file {seed}. ".encode()
        for start in range(0, size, chunk_size):
            n, offset = min(chunk_size, size - start), start % len(line)
            yield (line * (n // len(line) + 2))[offset : offset + n]
        return
    head = _header(mimetype, size, seed)[:size]
    rng = random.Random(seed)
    if head:
        yield head
    left = size - len(head)
    while left > 0:
        n = min(chunk_size, left)
        yield rng.randbytes(n)
        left -= n


def _header(mimetype: str, size: int, seed: str) -> bytes:
    base = mimetype.partition(";")[0].strip().lower()
    if base == "image/png":
        # A whole picture (decoders stop at IEND and ignore the filler after it): clients can show it.
        return png(seed, 480, 320)
    if base == "audio/ogg":
        # One Ogg page holding an OpusHead packet: what sniffers and players look at first.
        page = (
            b"OggS\x00\x02" + bytes(8) + b"\x01\x00\x00\x00" + bytes(8) + b"\x01" + bytes([len(_OPUS_HEAD)])
        )
        return page + _OPUS_HEAD
    if base == "image/webp":
        return b"RIFF" + struct.pack("<I", max(0, size - 8)) + b"WEBPVP8 "
    if base.startswith("application/vnd.openxmlformats") or base.endswith("+zip"):
        return _MAGIC["application/zip"]
    return _MAGIC.get(base, b"")


def png(seed: str, width: int = 32, height: int = 32) -> bytes:
    """A solid-colour PNG of `width` × `height`, its colour from `seed`."""
    r, g, b = hashlib.sha256(seed.encode()).digest()[:3]
    row = b"\x00" + bytes((r, g, b)) * width
    raw = zlib.compress(row * height)

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


# ------------------------------------------------------------------------------------------ history


def make_history(own_jid: str, chats: int, messages_per_chat: int) -> tuple[HistoryConversation, ...]:
    """Plausible past conversations, newest first: 1:1 chats and groups, incoming and from_me messages."""
    rng = random.Random()
    people = rng.sample(_PEOPLE, len(_PEOPLE))
    current = now()
    conversations = []
    for i in range(chats):
        last_at = current - timedelta(hours=3 * i, minutes=rng.randint(2, 50))
        if i % 3 == 1:
            name = _GROUPS[(i // 3) % len(_GROUPS)]
            chat_id = f"120363{rng.randrange(10**11, 10**12)}@{GROUP_SERVER}"
            members = [(group_participant(chat_id, str(k)), people[(i + k) % len(people)]) for k in range(3)]
        else:
            name = people[i % len(people)]
            chat_id = f"1555{rng.randrange(10**6, 10**7)}@{USER_SERVER}"
            members = [(chat_id, name)]
        messages = _messages(rng, chat_id, own_jid, members, messages_per_chat, last_at)
        trailing = 0
        for message in reversed(messages):
            if message.from_me:
                break
            trailing += 1
        unread = trailing if i < 2 else 0
        conversations.append(
            HistoryConversation(chat_id, name, chat_id.endswith(GROUP_SERVER), unread, messages)
        )
    return tuple(conversations)


def _messages(
    rng: random.Random,
    chat_id: str,
    own_jid: str,
    members: list[tuple[str, str]],
    count: int,
    last_at: datetime,
) -> tuple[Message, ...]:
    out = []
    for j in range(count):
        from_me = j % 3 == 1
        sender, sender_name = (own_jid, None) if from_me else rng.choice(members)
        out.append(
            Message(
                id=message_id(),
                chat_id=chat_id,
                sender=sender,
                from_me=from_me,
                timestamp=last_at - timedelta(minutes=7 * (count - 1 - j), seconds=rng.randint(0, 59)),
                text=rng.choice(_LINES),
                sender_name=sender_name,
                status=MessageStatus.READ if from_me else MessageStatus.SENT,
            )
        )
    return tuple(out)
