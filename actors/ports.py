"""The port every WhatsApp client adapter implements, and what an adapter is built from.

Adapters: `actors.clients.simulated.SimulatedClient` (the simulated network) and
`actors.clients.neonize.NeonizeClient` (real WhatsApp). Each module ends with a conformance line
(`_: type[WhatsAppClient] = TheClient`); `tests/test_client_contract.py` runs one suite over both.

Lifecycle (one client object per process, never two, never reused after `stop`):
`connect()` once → events flow from `events()` → `stop()` (or `logout()` then `stop()`).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from actors.domain import Message, MessageType, SendResult
from actors.events import ClientEvent


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
