"""Size guards: refuse media above the limit before the whole body is in memory."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from typing import Protocol

from kernel.errors import MediaTooLarge

DEFAULT_CHUNK = 64 * 1024


class AsyncReadable(Protocol):
    """Anything with an async `read(size)`, e.g. Starlette's `UploadFile`."""

    async def read(self, size: int = -1, /) -> bytes: ...


def check_size(n: int, limit: int) -> None:
    """Raise `MediaTooLarge` if `n` bytes are more than `limit`."""
    if n > limit:
        raise MediaTooLarge(f"The file is larger than the limit of {limit} bytes", size=n, limit=limit)


async def limit_stream(chunks: AsyncIterable[bytes], limit: int) -> AsyncIterator[bytes]:
    """Pass `chunks` through, raising `MediaTooLarge` as soon as they add up to more than `limit`."""
    total = 0
    async for chunk in chunks:
        total += len(chunk)
        if total > limit:
            raise MediaTooLarge(f"The file is larger than the limit of {limit} bytes", limit=limit)
        yield chunk


async def read_limited(chunks: AsyncIterable[bytes], limit: int) -> bytes:
    """Read an async byte stream (e.g. `request.stream()`) into memory, up to `limit` bytes."""
    buffer = bytearray()
    async for chunk in limit_stream(chunks, limit):
        buffer += chunk
    return bytes(buffer)


async def read_file_limited(file: AsyncReadable, limit: int, *, chunk_size: int = DEFAULT_CHUNK) -> bytes:
    """Read an async file into memory, pulling at most `limit + 1` bytes before refusing it."""
    buffer = bytearray()
    while True:
        chunk = await file.read(min(chunk_size, limit + 1 - len(buffer)))
        if not chunk:
            return bytes(buffer)
        buffer += chunk
        check_size(len(buffer), limit)
