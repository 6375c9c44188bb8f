"""Domain values shared by the actors, the API and persistence. Import-light: stdlib only.

Everything here is a frozen slotted dataclass: cheap in a session process, picklable across Ray.
Timestamps are timezone-aware UTC datetimes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Backend(StrEnum):
    """Which WhatsApp the sessions talk to (WA_BACKEND)."""

    NEONIZE = "neonize"
    SIMULATED = "simulated"


class SessionStatus(StrEnum):
    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    QR_READY = "qr_ready"
    CONNECTED = "connected"


class Reason(StrEnum):
    """Why a session is not connected (or, `RESTRICTED`, what limits it while connected). Stable codes:
    the web inbox switches on them."""

    LOGGED_OUT = "logged_out"  # the phone unlinked this device: a new scan is needed
    QR_TIMEOUT = "qr_timeout"  # every pairing round ended unscanned
    NETWORK = "network"  # WhatsApp unreachable; retrying by itself
    REPLACED = "replaced"  # another client took over this device's stream
    BANNED = "banned"  # temporary ban
    OUTDATED = "outdated"  # WhatsApp refused this client version
    PHONE_IN_USE = "phone_in_use"  # the phone scanned is linked to another session; a new round follows
    # Still connected, but WhatsApp refused a message with its reach-out time lock (463): the number may
    # not start new chats for a while. Cleared when the session connects again.
    RESTRICTED = "restricted"
    # The number's proxy (`PUT /sessions/{id}/proxy`) is broken: no connection to it (refused, unknown
    # host, timed out), it refused the credentials, or it would not connect us on to WhatsApp. The session
    # keeps retrying with its capped backoff and says this meanwhile; a new proxy is tried at once.
    PROXY_UNREACHABLE = "proxy_unreachable"
    PROXY_AUTH_FAILED = "proxy_auth_failed"
    PROXY_REFUSED = "proxy_refused"
    ERROR = "error"  # anything else


# Reasons after which the session stays down until the user acts (a scan, a pairing code, a delete).
TERMINAL_REASONS = frozenset({Reason.LOGGED_OUT, Reason.QR_TIMEOUT, Reason.BANNED, Reason.OUTDATED})
PROXY_REASONS = frozenset({Reason.PROXY_UNREACHABLE, Reason.PROXY_AUTH_FAILED, Reason.PROXY_REFUSED})


class MessageType(StrEnum):
    TEXT = "text"
    IMAGE = "image"
    VIDEO = "video"
    AUDIO = "audio"
    DOCUMENT = "document"
    STICKER = "sticker"
    LOCATION = "location"
    CONTACT = "contact"  # one or more contact cards (vCard)
    POLL = "poll"
    REVOKED = "revoked"  # deleted for everyone: content and media are gone
    OTHER = "other"  # anything else; always carries a `summary` a UI can show


class MessageStatus(StrEnum):
    """Ordered: a receipt only ever moves a message forward (FAILED is terminal and separate)."""

    PENDING = "pending"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    PLAYED = "played"
    FAILED = "failed"

    @property
    def rank(self) -> int:
        return _STATUS_RANK[self]


_STATUS_RANK = {
    MessageStatus.PENDING: 0,
    MessageStatus.SENT: 1,
    MessageStatus.DELIVERED: 2,
    MessageStatus.READ: 3,
    MessageStatus.PLAYED: 4,
    MessageStatus.FAILED: 5,
}


@dataclass(frozen=True, slots=True)
class Media:
    mimetype: str
    file_name: str | None = None
    size: int | None = None
    seconds: int | None = None
    ptt: bool = False
    video_note: bool = False  # a round video message (WhatsApp's PTV)


@dataclass(frozen=True, slots=True)
class Reaction:
    """One person's reaction to a message; each sender has at most one (a new one replaces it)."""

    sender: str
    emoji: str
    timestamp: datetime


@dataclass(frozen=True, slots=True)
class Location:
    latitude: float
    longitude: float
    name: str | None = None
    address: str | None = None
    url: str | None = None
    live: bool = False


@dataclass(frozen=True, slots=True)
class ContactCard:
    display_name: str
    vcard: str


@dataclass(frozen=True, slots=True)
class PollVote:
    """One voter's current choice in a poll (an empty `options`: they took their vote back)."""

    voter: str
    options: tuple[str, ...]
    timestamp: datetime


@dataclass(frozen=True, slots=True)
class Poll:
    question: str
    options: tuple[str, ...]
    selectable: int = 1  # how many options a voter may pick (0: any number)
    votes: tuple[PollVote, ...] = ()  # one per voter, their latest


@dataclass(frozen=True, slots=True)
class Message:
    id: str
    chat_id: str
    sender: str  # JID of the author (our own JID for fromMe)
    from_me: bool
    timestamp: datetime
    type: MessageType = MessageType.TEXT
    text: str | None = None
    sender_name: str | None = None
    sender_alt: str | None = None  # the other identity of the sender (phone JID for an @lid sender)
    media: Media | None = None
    quoted_id: str | None = None
    status: MessageStatus = MessageStatus.SENT
    # Opaque to everything but the adapter that produced it: what it needs to download the media later.
    media_ref: dict[str, Any] | None = field(default=None, compare=False, repr=False)
    # A short text a UI can show for any type (e.g. "📍 Location", "Poll: Lunch?"); set for OTHER always.
    summary: str | None = None
    edited_at: datetime | None = None
    reactions: tuple[Reaction, ...] = ()
    location: Location | None = None
    contacts: tuple[ContactCard, ...] = ()
    poll: Poll | None = None
    view_once: bool = False  # marked as such; its content is not kept


@dataclass(frozen=True, slots=True)
class Chat:
    id: str
    name: str | None
    is_group: bool
    unread_count: int
    timestamp: datetime | None
    last_message: Message | None = None
    # The contact's (or group's) picture as last fetched from WhatsApp: a CDN link that expires. The
    # session hands out the bridge's own URL instead (actors.session_contacts.picture_path).
    picture_url: str | None = None
    picture_id: str | None = None  # WhatsApp's id of that picture
    picture_checked_at: datetime | None = None  # when WhatsApp was last asked (None: never)


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: tuple[T, ...]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class SendResult:
    id: str
    timestamp: datetime
    # For media: what the adapter needs to download the uploaded file again (our own copy in the inbox).
    media_ref: dict[str, Any] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class NumberCheck:
    """Whether a phone number has a WhatsApp account, and its JID when it has one."""

    phone: str  # E.164
    on_whatsapp: bool
    jid: str | None


@dataclass(frozen=True, slots=True)
class ContactInfo:
    """What WhatsApp tells a number about one of its contacts."""

    jid: str
    name: str | None  # the phone's address book
    push_name: str | None  # the name the contact gave themself
    about: str | None  # their "about" text, when they share it
    blocked: bool
    picture_id: str | None = None  # WhatsApp's id of their current picture (None: none, or hidden)
    in_inbox: bool = False  # the number has a chat with them (its picture route serves the picture)


@dataclass(frozen=True, slots=True)
class SessionView:
    """What a client sees of a session (the contract's `Session`)."""

    id: str
    user_id: str
    slot: int
    status: SessionStatus
    reason: Reason | None
    phone: str | None
    display_name: str | None
    profile_pic_url: str | None
    last_seen: datetime | None
    qr: str | None = None
    qr_expires_at: datetime | None = None
    pairing_code: str | None = None
    # The session's process is up and holds the WhatsApp connection (its heartbeat: actors.heartbeat).
    live: bool = False
    proxy: str | None = None  # the number's proxy without its password (kernel.proxy.ProxySettings.public)


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a session's actor runs, as the registry sees it."""

    session_id: str
    node_id: str | None
    pid: int | None
    status: SessionStatus | None
    alive: bool
    # False while the session has not loaded its row (e.g. PostgreSQL unreachable at boot).
    ready: bool = True
    # Why the session cannot make progress (its boot keeps failing, its client calls hang), or None.
    stuck: str | None = None
    # Events received but not yet in PostgreSQL (spooled on the session's disk).
    spooled: int = 0
    # Writes PostgreSQL could not apply (a bug, bad data), kept in `<spool>.failed` for `spool replay`.
    failed: int = 0
    # Why the database does not take this session's writes now (`read_only`, `no_resources`), or None.
    refused: str | None = None
