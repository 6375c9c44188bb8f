"""Row decoding and keyset cursors for chats and messages, shared by a session's store and `persistence.repo`.

Import-light on purpose (every session is its own process): the stdlib and `kernel.domain`, `kernel.errors`.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from kernel.domain import (
    Chat,
    Media,
    Message,
    MessageStatus,
    MessageType,
    Reaction,
    Reason,
    SessionStatus,
    SessionView,
)
from kernel.errors import InvalidInput
from kernel.ids import phone_of_jid
from kernel.message_kinds import content_from_json

MAX_PAGE = 500
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


# A message's words for full-text search (index ix_message_words): the `simple` configuration, no
# language's stemming, so any language's words match as written. Queries use it as it is written here.
def message_words(table: str = "") -> str:
    """The words expression, its columns qualified by `table` when a query joins another table."""
    of = f"{table}." if table else ""
    # Bracketed as PostgreSQL writes the index back, so that the models and the migrated schema compare.
    return f"to_tsvector('simple'::regconfig, (COALESCE({of}text, '') || ' ') || COALESCE({of}summary, ''))"


MESSAGE_WORDS = message_words()

MESSAGE_COLUMNS = (
    "id",
    "chat_id",
    "sender",
    "sender_alt",
    "sender_name",
    "from_me",
    "ts",
    "type",
    "text",
    "media",
    "media_ref",
    "quoted_id",
    "status",
    "summary",
    "edited_at",
    "reactions",
    "content",
    "view_once",
)
_STATUS_ORDER = ", ".join(f"'{s.value}'" for s in sorted(MessageStatus, key=lambda s: s.rank))


def rank(expr: str) -> str:
    return f"array_position(ARRAY[{_STATUS_ORDER}], {expr})"


def json_value(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str | bytes) else value


def utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def media_to_json(media: Media | None) -> str | None:
    """The JSONB text stored in `message.media`."""
    if media is None:
        return None
    return json.dumps(
        {
            "mimetype": media.mimetype,
            "file_name": media.file_name,
            "size": media.size,
            "seconds": media.seconds,
            "ptt": media.ptt,
            "video_note": media.video_note,
        }
    )


def media_from_json(value: Any) -> Media | None:
    """A `Media` from the stored JSONB (text or already decoded)."""
    data = json_value(value)
    if not isinstance(data, dict) or not data.get("mimetype"):
        return None
    return Media(
        mimetype=str(data["mimetype"]),
        file_name=data.get("file_name"),
        size=data.get("size"),
        seconds=data.get("seconds"),
        ptt=bool(data.get("ptt", False)),
        video_note=bool(data.get("video_note", False)),
    )


def reactions_to_json(reactions: tuple[Reaction, ...]) -> str | None:
    """The JSONB text stored in `message.reactions` (NULL when there are none)."""
    if not reactions:
        return None
    return json.dumps(
        [{"sender": r.sender, "emoji": r.emoji, "timestamp": utc(r.timestamp).isoformat()} for r in reactions]
    )


def reactions_from_json(value: Any) -> tuple[Reaction, ...]:
    data = json_value(value)
    if not isinstance(data, list):
        return ()
    return tuple(
        Reaction(
            sender=str(r["sender"]),
            emoji=str(r["emoji"]),
            timestamp=utc(datetime.fromisoformat(r["timestamp"])),
        )
        for r in data
        if isinstance(r, dict) and r.get("sender") and r.get("emoji") and r.get("timestamp")
    )


def message_from_row(row: Mapping[Any, Any], prefix: str = "") -> Message:
    """A domain `Message` from a row holding MESSAGE_COLUMNS (optionally prefixed)."""

    def col(name: str) -> Any:
        return row[prefix + name]

    ref = json_value(col("media_ref"))
    location, contacts, poll = content_from_json(json_value(col("content")))
    return Message(
        id=col("id"),
        chat_id=col("chat_id"),
        sender=col("sender"),
        sender_alt=col("sender_alt"),
        sender_name=col("sender_name"),
        from_me=col("from_me"),
        timestamp=utc(col("ts")),
        type=MessageType(col("type")),
        text=col("text"),
        media=media_from_json(col("media")),
        media_ref=ref if isinstance(ref, dict) else None,
        quoted_id=col("quoted_id"),
        status=MessageStatus(col("status")),
        summary=col("summary"),
        edited_at=utc(col("edited_at")) if col("edited_at") is not None else None,
        reactions=reactions_from_json(col("reactions")),
        location=location,
        contacts=contacts,
        poll=poll,
        view_once=bool(col("view_once")),
    )


def session_view_from_row(row: Mapping[Any, Any]) -> SessionView:
    """A `SessionView` from a `whatsapp_session` row, with the heartbeat's columns when it has them
    (`persistence.reads`: `live`, `qr`, `qr_expires_at`, `pairing_code`)."""
    last_seen = row["last_seen"]
    qr_expires_at = row.get("qr_expires_at")
    return SessionView(
        id=str(row["id"]),
        user_id=row["user_id"],
        slot=row["slot"],
        status=SessionStatus(row["status"]),
        reason=Reason(row["reason"]) if row["reason"] else None,
        phone=row["phone"],
        display_name=row["display_name"],
        profile_pic_url=row["profile_pic_url"],
        last_seen=utc(last_seen) if last_seen is not None else None,
        qr=row.get("qr"),
        qr_expires_at=utc(qr_expires_at) if qr_expires_at is not None else None,
        pairing_code=row.get("pairing_code"),
        live=bool(row.get("live")),
        proxy=row.get("proxy_url"),
    )


def chat_from_row(row: Mapping[Any, Any]) -> Chat:
    """A domain `Chat` from a chat row joined with its last message's columns prefixed `m_`."""
    ts = row["last_message_at"]
    checked = row.get("picture_checked_at")
    return Chat(
        id=row["id"],
        # No name from the address book, the contact or the group: the formatted number, as the phone.
        name=row["name"] or phone_of_jid(row["id"]),
        is_group=row["is_group"],
        unread_count=row["unread_count"],
        timestamp=utc(ts) if ts is not None else None,
        last_message=message_from_row(row, "m_") if row.get("m_id") is not None else None,
        picture_url=row.get("picture_url"),
        picture_id=row.get("picture_id"),
        picture_checked_at=utc(checked) if checked is not None else None,
    )


# --- keyset cursors ----------------------------------------------------------------------------------------


def encode_cursor(kind: str, ts: datetime | None, key: str) -> str:
    """An opaque url-safe cursor for the keyset position (ts, key) in a listing of `kind`."""
    micros = None if ts is None else (utc(ts) - _EPOCH) // _MICROSECOND
    raw = json.dumps([kind, micros, key], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(kind: str, cursor: str) -> tuple[datetime | None, str]:
    """The (ts, key) a cursor of `kind` points after; InvalidInput for anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        tag, micros, key = json.loads(raw)
        if tag != kind or not isinstance(key, str) or not (micros is None or type(micros) is int):
            raise ValueError(cursor)
        ts = None if micros is None else _EPOCH + micros * _MICROSECOND
    except (ValueError, TypeError, OverflowError, binascii.Error, UnicodeDecodeError) as err:
        raise InvalidInput("Malformed cursor") from err
    return ts, key


def check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"limit must be between 1 and {MAX_PAGE}")
