"""The port every WhatsApp client adapter implements, and what an adapter is built from.

Adapters: `actors.clients.simulated.SimulatedClient` (the simulated network) and
`actors.clients.neonize.NeonizeClient` (real WhatsApp). Each module ends with a conformance line
(`_: type[WhatsAppClient] = TheClient`); `tests/test_client_contract.py` runs one suite over both.

Lifecycle (one client object per process, never two, never reused after `stop`):
`connect()` once → events flow from `events()` → `stop()` (or `logout()` then `stop()`).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar

from kernel.domain import (
    Chat,
    ContactCard,
    ContactInfo,
    Location,
    Message,
    MessageStatus,
    MessageType,
    NumberCheck,
    Poll,
    Reaction,
    Reason,
    SendResult,
    SessionStatus,
)
from kernel.events import ClientEvent, HistoryChunk
from kernel.groups import GroupInfo, MemberChange, MemberOutcome
from kernel.proxy import ProxySettings
from kernel.simulated import Device, SentMessage
from kernel.stored import ChatRead, Operation, SendRecord, SessionToRun, StoredPicture, StoredSession

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ClientOptions:
    """What an adapter needs to start one session.

    `device_jid` None means "pair a new device" (QR / pairing code); otherwise resume that device and
    fail with `LoggedOut` if its credentials are gone. `auth_dsn` is the libpq DSN of the auth store
    (whatsmeow's tables, or the simulated network's), already pointing at its dedicated schema.
    """

    session_id: str
    device_jid: str | None
    auth_dsn: str
    # The number's proxy (with its password; its repr hides it): the WhatsApp connection and media go
    # through it. A proxy that cannot be used ends the dial with a `Disconnected` proxy reason.
    proxy: ProxySettings | None = None
    # Simulated network timings (ignored by real adapters).
    qr_first_s: float = 60.0
    qr_next_s: float = 20.0
    qr_codes: int = 6


@dataclass(frozen=True, slots=True)
class OutgoingMedia:
    """An image, video, document or (non-voice) audio file to send."""

    data: bytes
    kind: MessageType
    mimetype: str
    file_name: str | None = None
    caption: str | None = None


@dataclass(frozen=True, slots=True)
class VoiceNote:
    """OGG/Opus mono audio already validated by `actors.media`; sent with the voice-note (ptt) flag."""

    ogg: bytes
    seconds: int
    waveform: bytes | None = None
    mimetype: str = "audio/ogg; codecs=opus"


@dataclass(frozen=True, slots=True)
class MediaBody:
    """Downloaded media, read in chunks: never the whole file in memory.

    `size` is exact (the bytes `chunks` yields). `chunks` releases what backs it (e.g. a temporary file)
    when exhausted or closed: whoever opens a body consumes it or calls `chunks.aclose()`.
    """

    size: int
    chunks: AsyncGenerator[bytes, None]


@dataclass(frozen=True, slots=True)
class PictureInfo:
    """A profile picture as WhatsApp describes it: `url` is a CDN link that expires."""

    id: str
    url: str
    mimetype: str = "image/jpeg"


class WhatsAppClient(Protocol):
    async def connect(self) -> None:
        """Start connecting (returns once the dial is under way); outcome arrives as events."""
        ...

    def events(self) -> AsyncIterator[ClientEvent]:
        """The client's events, in order; ends after `stop()`."""
        ...

    async def request_pairing_code(self, phone: str) -> str:
        """Ask for an 8-character pairing code for `phone` (E.164); also emitted as `PairingCode`."""
        ...

    async def send_text(self, to: str, text: str, *, quoted: Message | None = None) -> SendResult: ...

    async def send_media(
        self, to: str, media: OutgoingMedia, *, quoted: Message | None = None
    ) -> SendResult: ...

    async def send_voice_note(
        self, to: str, note: VoiceNote, *, quoted: Message | None = None
    ) -> SendResult: ...

    async def send_location(self, to: str, location: Location) -> SendResult:
        """A pinned location (latitude, longitude, optionally the place's name and address)."""
        ...

    async def send_contact(self, to: str, card: ContactCard) -> SendResult:
        """A contact card (`card.vcard` as built by `kernel.message_kinds.vcard`)."""
        ...

    async def send_poll(self, to: str, poll: Poll) -> SendResult:
        """A poll of 2..12 options; `poll.selectable` 1 is a single answer, 0 any number."""
        ...

    async def check_numbers(self, phones: Sequence[str]) -> list[NumberCheck]:
        """Which of `phones` (E.164 or digits) have a WhatsApp account: one round trip for them all, in
        the order asked."""
        ...

    async def contact_info(self, jid: str) -> ContactInfo:
        """Names, about text, picture id and whether we block the contact `jid` (a user JID)."""
        ...

    async def set_blocked(self, jid: str, blocked: bool) -> None:
        """Block (or unblock) the contact `jid` on WhatsApp, as the phone's "Block" does."""
        ...

    async def groups(self) -> list[GroupInfo]:
        """The groups this number is in (subject, description, members and admins)."""
        ...

    async def group_info(self, jid: str) -> GroupInfo:
        """One group this number is in; `GroupNotFound` for any other."""
        ...

    async def create_group(self, subject: str, participants: Sequence[str]) -> GroupInfo:
        """A new group with this number as its creator and admin, and whom WhatsApp let in of
        `participants` (user JIDs): the answer's members say who."""
        ...

    async def change_members(
        self, jid: str, participants: Sequence[str], change: MemberChange
    ) -> list[MemberOutcome]:
        """Add or remove `participants` (user JIDs): one outcome each. `NotGroupAdmin` when this number
        may not."""
        ...

    async def group_invite_link(self, jid: str, reset: bool = False) -> str:
        """The group's invite link (`https://chat.whatsapp.com/…`); `reset` revokes it for a new one."""
        ...

    async def reject_call(self, caller: str, call_id: str) -> None:
        """Decline a call (a `CallOffered`): the caller sees it declined, as when the phone declines."""
        ...

    async def download_media(self, message: Message, max_bytes: int) -> MediaBody:
        """An incoming message's decrypted media (from `message.media_ref`), ready to read in chunks.

        Raises before returning, never while `chunks` is read, for what the caller must answer with a
        status: MediaNotAvailable, MediaTooLarge (above `max_bytes`, refused before downloading when the
        size is known), ClientTimeout, SessionNotConnected.
        """
        ...

    async def mark_read(self, chat_id: str, messages: Sequence[Message]) -> None: ...

    async def send_reaction(self, message: Message, emoji: str) -> SendResult:
        """React to `message` (anyone's) in its chat; `emoji` "" removes our reaction."""
        ...

    async def edit_message(self, message: Message, text: str) -> SendResult:
        """Replace the text of our own `message` (WhatsApp accepts edits for a limited time)."""
        ...

    async def revoke_message(self, message: Message) -> SendResult:
        """Delete our own `message` for everyone."""
        ...

    async def send_chat_presence(self, chat_id: str, state: str) -> None:
        """Tell the contact we are composing, recording or paused (stopped typing)."""
        ...

    async def profile_picture(self, jid: str, known_id: str | None) -> PictureInfo | None:
        """The current picture of `jid` (a contact, a group, or our own JID); None if it has none.

        `known_id`: the picture id we already have; an adapter may answer with the same id and no new URL.
        """
        ...

    async def download_picture(self, picture: PictureInfo, max_bytes: int) -> bytes:
        """The picture's bytes (small: WhatsApp's profile pictures are a few hundred KB at most)."""
        ...

    async def logout(self) -> None:
        """Unlink this device from the phone and delete its credentials."""
        ...

    async def stop(self) -> None:
        """Disconnect and release the client; idempotent."""
        ...


# --- the store ports: PostgreSQL as the session and the registry need it (implemented in persistence/) ---


class SendRecordsPort(Protocol):
    """A session's Idempotency-Key records, each key claimed against the user's other sessions
    (`persistence.send_records.SendRecords`)."""

    async def recent(self, user_id: str) -> list[SendRecord]: ...
    async def claim(self, user_id: str, record: SendRecord) -> SendRecord | None: ...
    async def save(self, user_id: str, record: SendRecord) -> None: ...
    async def delete(self, user_id: str, key: str) -> None: ...


class BeatStore(Protocol):
    """What the heartbeat (`actors.heartbeat`) needs of the session's store."""

    async def beat(
        self,
        process: str,
        ttl_s: float,
        *,
        connected: bool,
        qr: str | None = None,
        qr_expires_at: datetime | None = None,
        pairing_code: str | None = None,
    ) -> None: ...
    async def end_beat(self, process: str) -> None: ...


class LeaseStore(Protocol):
    """The session's lease (`actors.lease`): taken, renewed and released through its store."""

    async def take_lease(self, owner: str, ttl_s: float) -> int | None: ...
    async def renew_lease(self, ttl_s: float) -> None: ...
    async def release_lease(self) -> None: ...


class InboxStorePort(Protocol):
    """A session's chats and messages (`persistence.inbox_store.InboxStore`)."""

    async def apply_history(self, chunk: HistoryChunk) -> list[ChatRead]: ...
    async def add_message(self, message: Message, *, chat_name: str | None, count_unread: bool) -> bool: ...
    async def apply_receipt(
        self, chat_id: str, message_ids: tuple[str, ...], status: MessageStatus
    ) -> list[Message]: ...
    async def apply_reaction(self, chat_id: str, message_id: str, reaction: Reaction) -> Message | None: ...
    async def apply_vote(
        self, chat_id: str, poll_id: str, voter: str, option_hashes: tuple[str, ...], at: datetime
    ) -> Message | None: ...
    async def apply_edit(
        self, chat_id: str, message_id: str, text: str, edited_at: datetime
    ) -> Message | None: ...
    async def apply_revoke(self, chat_id: str, message_id: str) -> Message | None: ...
    async def apply_chat_read(self, chat_id: str, up_to: datetime | None = None) -> ChatRead | None: ...
    async def unread_incoming(self, chat_id: str, limit: int) -> list[Message]: ...
    async def get_message(self, chat_id: str, message_id: str) -> Message: ...
    async def mark_chat_read(self, chat_id: str) -> None: ...
    async def purge(self) -> None: ...


class ChatPeoplePort(Protocol):
    """Names, pictures and identity links of a session's chats (`persistence.chat_people.ChatPeople`)."""

    async def save_contact_name(self, jid: str, name: str, source: str) -> Chat | None: ...
    async def group_chat(self, jid: str, subject: str | None) -> Chat: ...
    async def identity_links(self) -> dict[str, str]: ...
    async def link_identity(self, lid: str, pn: str) -> Chat | None: ...
    async def save_picture(
        self, chat_id: str, picture_id: str | None, url: str | None, checked_at: datetime | None
    ) -> None: ...
    async def picture(self, chat_id: str) -> StoredPicture: ...
    async def cache_picture(self, chat_id: str, key: str, mimetype: str, data: bytes) -> None: ...


class SessionStorePort(BeatStore, LeaseStore, Protocol):
    """What the session needs of its store (`persistence.session_store.SessionStore`): its row and
    heartbeat here, its inbox, its chats' people and its send records as parts over the same connection."""

    @property
    def inbox(self) -> InboxStorePort: ...
    @property
    def people(self) -> ChatPeoplePort: ...
    @property
    def send_records(self) -> SendRecordsPort: ...

    async def in_one_transaction(self, body: Callable[[], Awaitable[T]]) -> T: ...
    async def load(self) -> StoredSession | None: ...
    async def save_state(self, status: SessionStatus, reason: Reason | None) -> None: ...
    async def save_profile(
        self,
        *,
        phone: str | None,
        display_name: str | None,
        profile_pic_url: str | None,
        device_jid: str | None,
    ) -> bool: ...
    async def clear_device(self) -> None: ...
    async def set_counters(
        self, *, qr_rounds: int | None = None, connect_failures: int | None = None
    ) -> None: ...
    async def touch_last_seen(self, at: datetime | None = None) -> datetime: ...
    async def close(self) -> None: ...


class FleetStorePort(Protocol):
    """What the registry reads and deletes (`persistence.fleet_store.FleetStore`)."""

    async def sessions_to_run(self) -> list[SessionToRun]: ...
    async def session_owner(self, session_id: str) -> str | None: ...
    async def delete_session(self, session_id: str) -> None: ...
    async def purge_old_messages(self, days: int) -> int: ...
    async def operations_in_force(self) -> list[Operation]: ...
    async def start_drain(self, node_id: str, *, forced: bool, planned: int) -> Operation: ...
    async def record_operation(
        self,
        operation_id: str,
        *,
        planned: int,
        left: int,
        moved: list[dict[str, Any]],
        waiting: list[str],
        state: str = "running",
    ) -> bool: ...
    async def close(self) -> None: ...


class SimNetworkPort(Protocol):
    """The simulated network's own storage (`persistence.sim_network.SimStore`): its devices and the
    messages it received, for the simulated client only."""

    async def close(self) -> None: ...
    async def device(self, jid: str) -> Device | None: ...
    async def add_device(self, digits: str, push_name: str | None) -> str: ...
    async def delete_devices(self) -> int: ...
    async def forget(self) -> None: ...
    async def record_sent(self, sent: SentMessage) -> None: ...
    async def sent(self) -> list[SentMessage]: ...
    async def sent_data(self, message_id: str) -> bytes | None: ...


class Stores(Protocol):
    """Where a process's stores come from. The one implementation is `persistence.stores.PostgresStores`;
    the API (api/wiring.py) builds it and hands it to the registry, which hands it to each session actor:
    actors/ never imports persistence/ (tests/test_layers.py)."""

    def session_store(self, dsn: str, session_id: str) -> SessionStorePort: ...
    def sim_network(self, dsn: str, session_id: str) -> SimNetworkPort: ...
    def fleet(self, dsn: str) -> FleetStorePort: ...
