"""Reading the replayable log of live events (the `wa:events` stream the sessions write, `actors.bus`).

An entry's id (`<ms>-<n>`) is the `cursor` of the frame it becomes. Cursors compare as stream ids. The
log keeps the last `EVENT_STREAM_RETAINED` entries across all sessions (`actors.bus` trims it): a cursor
is resumable while its entry is still in the log (nothing after it was trimmed, and the log did not lose
its history).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

# The entries' shape lives in the kernel: the webhook dispatchers (actors/) read the same log.
from kernel.event_frames import Duplicates, Entry, decode, parse_cursor
from kernel.wire import EVENTS_STREAM

__all__ = ["Duplicates", "Entry", "decode", "parse_cursor"]

START = "0-0"
PAGE = 1000


def after(a: str, b: str) -> bool:
    """Whether stream id `a` comes after `b` (both valid ids)."""
    return (parse_cursor(a) or (0, 0)) > (parse_cursor(b) or (0, 0))


async def last_id(client: Redis) -> str:
    """The id of the newest entry ever added (`0-0` when the log does not exist yet)."""
    info = await _info(client)
    return _text(info.get("last-generated-id")) or START if info else START


async def resumable(client: Redis, cursor: str) -> bool:
    """Whether every entry after `cursor` is still in the log.

    A cursor names an entry this log handed out, and entries are only ever trimmed from the head: all
    that came after it is there exactly while that entry is. A log that lost its history (Redis restarted
    without persistence, flushed, or failed over to a replica that had not got it) no longer holds it,
    although the ids of its new entries compare after it. `0-0` (a client that has seen no entry)
    resumes while the log never lost one (as many added as it holds).
    """
    if cursor != START:
        return await holds(client, cursor)
    info = await _info(client)
    return not info or int(info.get("entries-added", -1)) == int(info.get("length", 0))


async def holds(client: Redis, entry_id: str) -> bool:
    """Whether the entry `entry_id` is in the log."""
    found: Any = await client.xrange(EVENTS_STREAM, min=entry_id, max=entry_id, count=1)
    return bool(found)


async def entries_between(client: Redis, cursor: str, upto: str) -> AsyncIterator[tuple[bytes, Any]]:
    """Raw entries with `cursor` < id <= `upto`, in order, a page at a time."""
    low = f"({cursor}"
    while True:
        page: Any = await client.xrange(EVENTS_STREAM, min=low, max=upto, count=PAGE)
        for entry_id, fields in page:
            yield entry_id, fields
        if len(page) < PAGE:
            return
        low = f"({_text(page[-1][0])}"


async def _info(client: Redis) -> dict[str, Any] | None:
    try:
        info: dict[str, Any] = await client.xinfo_stream(EVENTS_STREAM)
    except ResponseError:
        return None  # no such key: nothing was ever logged (or Redis lost it)
    return {(_text(k)): v for k, v in info.items()}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value) if value is not None else ""
