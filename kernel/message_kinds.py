"""Typed message kinds: the `summary` a UI can show, and the kind-specific content as stored and sent.

Import-light (domain only): both adapters, the store and the wire format use it, so every path shows a
location, a contact card or a poll the same way. `content` is what `message.content` (JSONB) holds:
`{"location": {...}}`, `{"contacts": [...]}` or `{"poll": {...}}`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from kernel.domain import ContactCard, Location, Media, MessageType, Poll, PollVote

MAX_SUMMARY = 200


def summary_for(
    kind: MessageType,
    *,
    media: Media | None = None,
    location: Location | None = None,
    contacts: tuple[ContactCard, ...] = (),
    poll: Poll | None = None,
    view_once: bool = False,
    other: str | None = None,
) -> str | None:
    """What a chat list shows for a message that is not plain text; None for text."""
    text: str | None
    if view_once:
        text = {MessageType.IMAGE: "View once photo", MessageType.VIDEO: "View once video"}.get(
            kind, "View once message"
        )
    elif kind is MessageType.LOCATION and location is not None:
        label = "Live location" if location.live else "Location"
        text = f"📍 {location.name}" if location.name and not location.live else f"📍 {label}"
    elif kind is MessageType.CONTACT:
        text = f"👤 {contacts[0].display_name}" if len(contacts) == 1 else f"👤 {len(contacts)} contacts"
    elif kind is MessageType.POLL and poll is not None:
        text = f"📊 {poll.question}"
    elif kind is MessageType.IMAGE:
        text = "📷 Photo"
    elif kind is MessageType.VIDEO:
        text = "Video message" if media is not None and media.video_note else "🎥 Video"
    elif kind is MessageType.AUDIO:
        text = "🎤 Voice message" if media is not None and media.ptt else "🎵 Audio"
    elif kind is MessageType.DOCUMENT:
        text = f"📄 {media.file_name}" if media is not None and media.file_name else "📄 Document"
    elif kind is MessageType.STICKER:
        text = "Sticker"
    elif kind is MessageType.REVOKED:
        text = "This message was deleted"
    elif kind is MessageType.OTHER:
        text = other or "Unsupported message: open WhatsApp on your phone to see it"
    else:
        return None
    return text[:MAX_SUMMARY]


# ------------------------------------------------------------------------------------------ stored content


def content_json(
    location: Location | None, contacts: tuple[ContactCard, ...], poll: Poll | None
) -> dict[str, Any] | None:
    """The JSONB value of `message.content` (snake_case keys), or None for kinds without content."""
    if location is not None:
        return {
            "location": {
                "latitude": location.latitude,
                "longitude": location.longitude,
                "name": location.name,
                "address": location.address,
                "url": location.url,
                "live": location.live,
            }
        }
    if contacts:
        return {"contacts": [{"display_name": c.display_name, "vcard": c.vcard} for c in contacts]}
    if poll is not None:
        return {
            "poll": {
                "question": poll.question,
                "options": list(poll.options),
                "selectable": poll.selectable,
                "votes": [
                    {"voter": v.voter, "options": list(v.options), "timestamp": v.timestamp.isoformat()}
                    for v in poll.votes
                ],
            }
        }
    return None


def content_from_json(
    data: Any,
) -> tuple[Location | None, tuple[ContactCard, ...], Poll | None]:
    """(location, contacts, poll) from a stored `message.content` (already decoded, or None)."""
    if not isinstance(data, Mapping):
        return None, (), None
    location = poll = None
    contacts: tuple[ContactCard, ...] = ()
    if isinstance(loc := data.get("location"), Mapping):
        location = Location(
            latitude=float(loc.get("latitude") or 0.0),
            longitude=float(loc.get("longitude") or 0.0),
            name=loc.get("name"),
            address=loc.get("address"),
            url=loc.get("url"),
            live=bool(loc.get("live", False)),
        )
    if isinstance(cards := data.get("contacts"), list):
        contacts = tuple(
            ContactCard(str(c.get("display_name") or ""), str(c.get("vcard") or ""))
            for c in cards
            if isinstance(c, Mapping)
        )
    if isinstance(p := data.get("poll"), Mapping):
        poll = Poll(
            question=str(p.get("question") or ""),
            options=tuple(str(o) for o in p.get("options") or ()),
            selectable=int(p.get("selectable") or 0),
            votes=tuple(
                PollVote(
                    str(v.get("voter") or ""),
                    tuple(str(o) for o in v.get("options") or ()),
                    datetime.fromisoformat(str(v["timestamp"])),
                )
                for v in p.get("votes") or ()
                if isinstance(v, Mapping) and v.get("timestamp")
            ),
        )
    return location, contacts, poll


# ------------------------------------------------------------------------------------------ wire (camelCase)


def location_wire(location: Location | None) -> dict[str, Any] | None:
    if location is None:
        return None
    return {
        "latitude": location.latitude,
        "longitude": location.longitude,
        "name": location.name,
        "address": location.address,
        "url": location.url,
        "live": location.live,
    }


def contacts_wire(contacts: tuple[ContactCard, ...]) -> list[dict[str, Any]] | None:
    if not contacts:
        return None
    return [{"displayName": c.display_name, "vcard": c.vcard} for c in contacts]


def poll_wire(poll: Poll | None) -> dict[str, Any] | None:
    if poll is None:
        return None
    tally = {option: 0 for option in poll.options}
    for vote in poll.votes:
        for option in vote.options:
            if option in tally:
                tally[option] += 1
    return {
        "question": poll.question,
        "options": list(poll.options),
        "selectable": poll.selectable,
        "tally": [{"option": option, "votes": count} for option, count in tally.items()],
        "votes": [
            {"voter": v.voter, "options": list(v.options), "timestamp": _iso(v.timestamp)} for v in poll.votes
        ],
    }


def option_hash(option: str) -> str:
    """How WhatsApp names a poll option in a vote: the SHA-256 of its text (hex here)."""
    return hashlib.sha256(option.encode()).hexdigest()


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# ------------------------------------------------------------------------------------------ outgoing


def vcard(name: str, phone_digits: str) -> str:
    """The vCard of a contact we send: WhatsApp links the card to the account by `waid` (digits only)."""
    escaped = name.replace("\\", "\\\\").replace("\n", " ").replace("\r", " ").replace(";", "\\;")
    escaped = escaped.replace(",", "\\,")
    return (
        f"BEGIN:VCARD\nVERSION:3.0\nFN:{escaped}\n"
        f"TEL;type=CELL;type=VOICE;waid={phone_digits}:+{phone_digits}\nEND:VCARD"
    )


OutgoingContent = Location | ContactCard | Poll


def content_kind(content: OutgoingContent) -> MessageType:
    """The message type a location, contact card or poll we send is stored as."""
    if isinstance(content, Location):
        return MessageType.LOCATION
    if isinstance(content, ContactCard):
        return MessageType.CONTACT
    return MessageType.POLL
