"""Events a WhatsApp client adapter emits. Frozen, adapter-neutral: no neonize or Ray type leaks in."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from kernel.domain import Message, MessageStatus, Reaction, Reason


@dataclass(frozen=True, slots=True)
class QrCode:
    """A fresh QR payload to show; valid until `expires_at`. A round is several codes, then silence."""

    code: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class PairingCode:
    """An 8-character code the user types on the phone (Linked devices → Link with phone number)."""

    code: str
    phone: str


@dataclass(frozen=True, slots=True)
class Paired:
    """The phone accepted this device. `device_jid` (user:device@server) is what later starts resume."""

    device_jid: str
    phone: str
    push_name: str | None


@dataclass(frozen=True, slots=True)
class Connected:
    """Logged in and online (after pairing or on a resumed start)."""

    push_name: str | None = None
    profile_pic_url: str | None = None


@dataclass(frozen=True, slots=True)
class Disconnected:
    """The connection dropped. `retrying`: the client reconnects by itself; otherwise it is done.

    `retry_after_s`: WhatsApp said when to try again (a temporary ban's expiry).
    """

    reason: Reason
    retrying: bool
    retry_after_s: float | None = None


@dataclass(frozen=True, slots=True)
class LoggedOut:
    """The device credentials are gone (unlinked, banned, ...): only a new pairing brings it back."""

    reason: Reason


@dataclass(frozen=True, slots=True)
class MessageReceived:
    """A live message: incoming, or sent from the user's phone (`message.from_me`)."""

    message: Message
    chat_name: str | None = None


@dataclass(frozen=True, slots=True)
class HistoryConversation:
    chat_id: str
    name: str | None
    is_group: bool
    unread_count: int
    messages: tuple[Message, ...]


@dataclass(frozen=True, slots=True)
class HistoryChunk:
    """One chunk of the history sync WhatsApp pushes after pairing."""

    conversations: tuple[HistoryConversation, ...]


@dataclass(frozen=True, slots=True)
class Receipt:
    """Messages we sent reached a new status (delivered, read, played)."""

    chat_id: str
    message_ids: tuple[str, ...]
    status: MessageStatus
    timestamp: datetime


@dataclass(frozen=True, slots=True)
class ReactionChanged:
    """Someone (the contact, or the user from the phone) reacted to a message; `emoji` "" removes it."""

    chat_id: str
    message_id: str
    reaction: Reaction


@dataclass(frozen=True, slots=True)
class MessageEdited:
    """The author edited a text (or caption); the message keeps its id."""

    chat_id: str
    message_id: str
    text: str
    edited_at: datetime


@dataclass(frozen=True, slots=True)
class MessageRevoked:
    """The author deleted the message for everyone: its content (and media) must not be kept."""

    chat_id: str
    message_id: str
    timestamp: datetime


@dataclass(frozen=True, slots=True)
class ChatRead:
    """The user read the chat elsewhere (own read receipts, app-state "mark read"): unread goes to 0.

    `up_to`: the newest message read, when known; messages after it stay unread.
    """

    chat_id: str
    up_to: datetime | None = None


@dataclass(frozen=True, slots=True)
class ContactName:
    """A name for a contact: `source` "contact" (the phone's address book) beats "push" (their own)."""

    jid: str
    name: str
    source: str


@dataclass(frozen=True, slots=True)
class IdentityLink:
    """WhatsApp addresses one contact both by phone number (`pn`) and by LID (`lid`): one chat."""

    lid: str
    pn: str


@dataclass(frozen=True, slots=True)
class Presence:
    """A contact's typing state in a chat (composing, recording, paused) or online state
    (available, unavailable; `last_seen` when known)."""

    chat_id: str
    state: str
    last_seen: datetime | None = None


@dataclass(frozen=True, slots=True)
class PollVoted:
    """Someone voted in a poll of the chat: `option_hashes` are the SHA-256 (hex) of the options they
    picked, as WhatsApp sends them (none: they took their vote back)."""

    chat_id: str
    poll_id: str
    voter: str
    option_hashes: tuple[str, ...]
    at: datetime


@dataclass(frozen=True, slots=True)
class CallOffered:
    """Someone calls this number. `caller` is who WhatsApp says calls (what a rejection answers, maybe a
    LID); `chat_id` their chat (the phone number's when known)."""

    chat_id: str
    caller: str
    call_id: str
    at: datetime


@dataclass(frozen=True, slots=True)
class PictureChanged:
    """A contact or group changed or removed its picture: what was fetched before is out of date."""

    jid: str


@dataclass(frozen=True, slots=True)
class GroupChanged:
    """Something happened to a group this number is in: its subject or description changed, people
    joined, left, became or stopped being admins, or this number joined it (`joined` holds our JID).
    `by` is who did it (None: WhatsApp itself, or not said)."""

    chat_id: str
    at: datetime
    by: str | None = None
    subject: str | None = None
    description: str | None = None
    joined: tuple[str, ...] = ()
    left: tuple[str, ...] = ()
    promoted: tuple[str, ...] = ()
    demoted: tuple[str, ...] = ()


ClientEvent = (
    GroupChanged
    | CallOffered
    | PollVoted
    | QrCode
    | PairingCode
    | Paired
    | Connected
    | Disconnected
    | LoggedOut
    | MessageReceived
    | HistoryChunk
    | Receipt
    | ReactionChanged
    | MessageEdited
    | MessageRevoked
    | ChatRead
    | ContactName
    | IdentityLink
    | Presence
    | PictureChanged
)
