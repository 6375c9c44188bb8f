"""The JSON shapes of the contract (camelCase), built from domain values.

Redis channels carry exactly the WebSocket frames' bodies, so the bus and the API both render through
these functions: one definition of `Session`, `Chat`, `Message` and the event payloads.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from kernel.domain import Chat, Media, Message, SessionView
from kernel.events import GroupChanged
from kernel.message_kinds import contacts_wire, location_wire, poll_wire

JSON = dict[str, Any]


def iso(ts: datetime | None) -> str | None:
    """ISO 8601 UTC with a `Z`, millisecond precision."""
    if ts is None:
        return None
    return ts.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def media_json(media: Media | None) -> JSON | None:
    if media is None:
        return None
    return {
        "mimetype": media.mimetype,
        "fileName": media.file_name,
        "size": media.size,
        "seconds": media.seconds,
        "ptt": media.ptt,
        "videoNote": media.video_note,
    }


def message_json(message: Message) -> JSON:
    return {
        "id": message.id,
        "chatId": message.chat_id,
        "sender": message.sender,
        "senderName": message.sender_name,
        "fromMe": message.from_me,
        "timestamp": iso(message.timestamp),
        "type": message.type.value,
        "text": message.text,
        "media": media_json(message.media),
        "quotedId": message.quoted_id,
        "status": message.status.value,
        "summary": message.summary,
        "editedAt": iso(message.edited_at),
        "reactions": [
            {"sender": r.sender, "emoji": r.emoji, "timestamp": iso(r.timestamp)} for r in message.reactions
        ],
        "location": location_wire(message.location),
        "contacts": contacts_wire(message.contacts),
        "poll": poll_wire(message.poll),
        "viewOnce": message.view_once,
    }


def chat_json(chat: Chat) -> JSON:
    return {
        "id": chat.id,
        "name": chat.name,
        "isGroup": chat.is_group,
        "unreadCount": chat.unread_count,
        "timestamp": iso(chat.timestamp),
        "lastMessage": message_json(chat.last_message) if chat.last_message else None,
        # Only ever the bridge's own URL (`picture_path`), never WhatsApp's expiring CDN link.
        "pictureUrl": chat.picture_url if chat.picture_url and chat.picture_url.startswith("/") else None,
    }


def picture_path(session_id: str, chat_id: str) -> str:
    """The bridge's URL of a chat's (or our own number's) picture: `GET` it with the usual headers."""
    return f"/sessions/{session_id}/chats/{chat_id}/picture"


def session_json(view: SessionView) -> JSON:
    return {
        "id": view.id,
        "slot": view.slot,
        "status": view.status.value,
        "reason": view.reason.value if view.reason else None,
        "phone": view.phone,
        "displayName": view.display_name,
        # Our own picture through the bridge (its CDN link expires): the chat route with our own number.
        "profilePicUrl": picture_path(view.id, f"{view.phone.lstrip('+')}@s.whatsapp.net")
        if view.profile_pic_url and view.phone
        else None,
        "lastSeen": iso(view.last_seen),
        "qr": view.qr,
        "pairingCode": view.pairing_code,
        "live": view.live,
        "proxy": view.proxy,
    }


def status_payload(view: SessionView) -> JSON:
    """Body of `wa:status:{id}` and of a `status` frame."""
    return {
        "status": view.status.value,
        "reason": view.reason.value if view.reason else None,
        "phone": view.phone,
        "displayName": view.display_name,
    }


def qr_payload(code: str, expires_at: datetime, rounds_left: int | None = None) -> JSON:
    """Body of `wa:qr:{id}` and of a `qr` frame; `roundsLeft`: the pairing rounds that follow this
    code's before the session gives up (`qr_timeout`), when the session says."""
    body: JSON = {"qr": code, "expiresAt": iso(expires_at)}
    if rounds_left is not None:
        body["roundsLeft"] = rounds_left
    return body


def msg_payload(message: Message) -> JSON:
    """Body of `wa:msg:{id}` and of a `message` frame."""
    return {"chatId": message.chat_id, "message": message_json(message)}


def chat_payload(chat_id: str, unread_count: int, name: str | None) -> JSON:
    """Body of `wa:chat:{id}` and of a `chat` frame: a chat's unread count (or name) changed."""
    return {"chatId": chat_id, "unreadCount": unread_count, "name": name}


def group_payload(chat_id: str, unread_count: int, name: str | None, change: GroupChanged) -> JSON:
    """A `chat` frame about a group's own event: the chat as it is now, and `group`, what changed."""
    group: JSON = {
        "by": change.by,
        "at": iso(change.at),
        "subject": change.subject,
        "description": change.description,
        "joined": list(change.joined),
        "left": list(change.left),
        "promoted": list(change.promoted),
        "demoted": list(change.demoted),
    }
    return {**chat_payload(chat_id, unread_count, name), "group": group}


def update_payload(message: Message, change: str, wire: JSON | None = None) -> JSON:
    """Body of `wa:message_update:{id}` and of a `message_update` frame: a stored message changed
    (`change` is reaction, edit, revoke or receipt); `message` is the whole message as it is now
    (`wire`: its `message_json`, when the caller has it already)."""
    return {
        "chatId": message.chat_id,
        "messageId": message.id,
        "change": change,
        "message": wire if wire is not None else message_json(message),
    }


def presence_payload(chat_id: str, state: str, last_seen: datetime | None) -> JSON:
    """Body of `wa:presence:{id}` and of a `presence` frame: the contact is composing, recording,
    paused (stopped typing), available (online) or unavailable (offline; `lastSeen` when known)."""
    return {"chatId": chat_id, "state": state, "lastSeen": iso(last_seen)}


def call_payload(chat_id: str, call_id: str, at: datetime, *, rejected: bool) -> JSON:
    """Body of `wa:call:{id}` and of a `call` frame: someone called this number (declined by the bridge
    when `rejected`, with REJECT_CALLS)."""
    return {"chatId": chat_id, "callId": call_id, "timestamp": iso(at), "rejected": rejected}


def channel(kind: str, session_id: str) -> str:
    """Redis channel name: kind is `qr`, `status`, `msg`, `chat`, `message_update`, `presence` or `call`."""
    return f"wa:{kind}:{session_id}"


# The replayable log of live events: one capped Redis Stream next to the pub/sub channels. An entry's id
# is the `cursor` of the WebSocket frame it becomes; its fields are below (short names: 100k entries).
EVENTS_STREAM = "wa:events"
# Entries kept (XADD MAXLEN ~: at least this many). At 100 events/s across the cluster: ~17 minutes.
EVENTS_RETAINED = 100_000
F_SESSION, F_KIND, F_DATA, F_PRODUCER, F_SEQ = "s", "k", "d", "p", "n"


def event_fields(session_id: str, kind: str, body: str, producer: str, seq: int) -> list[str]:
    """XADD field/value pairs of one event; (producer, seq) lets readers drop a re-sent duplicate."""
    return [F_SESSION, session_id, F_KIND, kind, F_DATA, body, F_PRODUCER, producer, F_SEQ, str(seq)]
