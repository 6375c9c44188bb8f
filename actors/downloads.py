"""A message's media served by its session: refused above the limit before any download, then streamed.

The session yields a `MediaHead` first and only once the download is under way (every error a caller
must answer with a status is raised before it: 404, 409, 413, 504), then the bytes in chunks of at most
`CHUNK_BYTES`. Nothing holds the whole file: the adapter's `MediaBody` reads it chunk by chunk, and the
Ray actor method streams each chunk to the caller as it is made (`SessionActor.media`).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Protocol

from actors.media.limits import check_size
from actors.ports import WhatsAppClient
from kernel.domain import Message
from kernel.errors import MediaNotAvailable
from kernel.ids import to_jid

# What the actor streams ahead of consumption before it waits for the caller (Ray generator backpressure).
STREAM_AHEAD = 8


@dataclass(frozen=True, slots=True)
class MediaHead:
    """What the response headers need: the first item of a media stream."""

    mimetype: str
    size: int
    file_name: str | None = None


MediaStream = AsyncGenerator[MediaHead | bytes, None]


class MessageLookup(Protocol):
    async def get_message(self, chat_id: str, message_id: str) -> Message: ...


async def stream_media(
    store: MessageLookup,
    client: Callable[[], WhatsAppClient],
    max_bytes: int,
    chat_id: str,
    message_id: str,
) -> MediaStream:
    """The `MediaHead` of a stored message's media, then its bytes. `client()` raises if not connected."""
    message = await store.get_message(to_jid(chat_id), message_id)
    if message.media is None:
        raise MediaNotAvailable()
    if message.media.size is not None:
        check_size(message.media.size, max_bytes)  # the stored size: refused before any download
    body = await client().download_media(message, max_bytes)
    try:
        yield MediaHead(message.media.mimetype, body.size, message.media.file_name)
        async for chunk in body.chunks:
            yield chunk
    finally:
        await body.chunks.aclose()
