"""A session's media stream as the API reads it: the head at once, then chunks as the client takes them.

`SessionActor.media` is a Ray streaming generator (`actors.downloads`): its first item is a `MediaHead`
(or the error the route answers with), then bytes. Ray's backpressure (`STREAM_AHEAD`) keeps at most a
few chunks between the session and the API, so neither holds more than that whatever the file's size.
Closing the stream (the client went away, a chunk did not come in time) cancels the generator in the
session, which releases what backs it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

from actors.downloads import MediaHead

log = logging.getLogger(__name__)

HEAD_TIMEOUT_S = 150.0  # the session's download bound (neonize: MediaFetcher.total_s, 140 s) and a margin
CHUNK_TIMEOUT_S = 30.0


class MediaDownload:
    """One media stream: `head` is known; iterate `chunks()` once (it closes the stream at the end)."""

    def __init__(self, refs: Any, head: MediaHead, chunk_timeout_s: float) -> None:
        self._refs = refs
        self.head = head
        self._chunk_timeout_s = chunk_timeout_s
        self._finished = False

    @classmethod
    async def open(
        cls, refs: Any, *, head_timeout_s: float = HEAD_TIMEOUT_S, chunk_timeout_s: float = CHUNK_TIMEOUT_S
    ) -> MediaDownload:
        """Wait for the head of a Ray `ObjectRefGenerator`; the session's error is raised as Ray raises it."""
        try:
            head = await asyncio.wait_for(_next(refs), head_timeout_s)
        except BaseException:
            _cancel(refs)
            raise
        if not isinstance(head, MediaHead):
            _cancel(refs)
            raise TypeError(f"a media stream must start with its MediaHead, not {type(head).__name__}")
        return cls(refs, head, chunk_timeout_s)

    async def chunks(self) -> AsyncIterator[bytes]:
        """The bytes, chunk by chunk. An error here can only cut the response short: the client sees fewer
        bytes than Content-Length said."""
        sent = 0
        try:
            while True:
                try:
                    chunk = await asyncio.wait_for(_next(self._refs), self._chunk_timeout_s)
                except StopAsyncIteration:
                    self._finished = True
                    return
                sent += len(chunk)
                yield chunk
        except Exception as err:
            log.warning("media stream cut after %d of %d bytes: %s", sent, self.head.size, type(err).__name__)
            raise
        finally:
            self.close()

    def close(self) -> None:
        """Stop the session's generator if it has not finished (idempotent)."""
        if not self._finished:
            self._finished = True
            _cancel(self._refs)


async def _next(refs: Any) -> Any:
    ref = await refs.__anext__()
    return await ref


def _cancel(refs: Any) -> None:
    import ray

    try:
        ray.cancel(refs)
    except Exception:
        log.debug("could not cancel a media stream", exc_info=True)
