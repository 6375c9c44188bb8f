"""`MediaBody`s for the adapters: a download parked in an anonymous temporary file, read back in chunks."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncGenerator
from typing import IO

from actors.ports import MediaBody

CHUNK_BYTES = 256 * 1024


async def body_from_bytes(data: bytes, *, chunk_size: int = CHUNK_BYTES) -> MediaBody:
    """Park `data` in a temporary file (deleted when the body is read or closed) so the caller can drop it.

    The file is anonymous (`tempfile.TemporaryFile`, in `TMPDIR`): nothing is left behind if the process dies.
    """
    file = await asyncio.to_thread(_spool, data)
    return MediaBody(len(data), file_chunks(file, chunk_size))


def _spool(data: bytes) -> IO[bytes]:
    file = tempfile.TemporaryFile()  # noqa: SIM115 (handed to file_chunks, which closes it)
    try:
        file.write(data)
        file.seek(0)
    except BaseException:
        file.close()
        raise
    return file


async def file_chunks(file: IO[bytes], chunk_size: int = CHUNK_BYTES) -> AsyncGenerator[bytes, None]:
    """The file's bytes in chunks of `chunk_size`, read off the event loop; closes the file at the end."""
    try:
        while chunk := await asyncio.to_thread(file.read, chunk_size):
            yield chunk
    finally:
        file.close()
