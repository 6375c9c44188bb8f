"""Reading the replayable log of live events (the `wa:events` stream the sessions write, `actors.bus`).

An entry's id (`<ms>-<n>`) is the `cursor` of the frame it becomes. Cursors compare as stream ids. The
log keeps the last `EVENTS_RETAINED` entries across all sessions (`actors.bus` trims it): a cursor is
resumable while its entry is still in the log (nothing after it was trimmed, and the log did not lose its
history) and was logged since the log has been indexed by owner (`kernel.event_index`: a resume reads its
user's index streams, `api.hub_replay`, never the shared log).
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

# The entries' shape lives in the kernel: the webhook dispatchers (actors/) read the same log.
from kernel.event_frames import Duplicates, Entry, decode, parse_cursor
from kernel.event_index import APPEND, INDEXED_SINCE
from kernel.wire import EVENTS_RETAINED, EVENTS_STREAM

__all__ = ["Duplicates", "Entry", "decode", "parse_cursor"]

START = "0-0"


def after(a: str, b: str) -> bool:
    """Whether stream id `a` comes after `b` (both valid ids)."""
    return (parse_cursor(a) or (0, 0)) > (parse_cursor(b) or (0, 0))


async def last_id(client: Redis) -> str:
    """The id of the newest entry ever added (`0-0` when the log does not exist yet)."""
    info = await _info(client)
    return _text(info.get("last-generated-id")) or START if info else START


async def resumable(client: Redis, cursor: str) -> bool:
    """Whether every entry after `cursor` is still in the log, and in its index.

    A cursor names an entry this log handed out, and entries are only ever trimmed from the head: all
    that came after it is there exactly while that entry is. A log that lost its history (Redis restarted
    without persistence, flushed, or failed over to a replica that had not got it) no longer holds it,
    although the ids of its new entries compare after it. `0-0` (a client that has seen no entry)
    resumes while the log never lost one (as many added as it holds). Either way the entries after it
    must all have been indexed (`kernel.event_index.INDEXED_SINCE`): none was logged before the index.
    """
    since = _text(await client.get(INDEXED_SINCE))
    if cursor != START:
        return bool(since) and not after(since, cursor) and await holds(client, cursor)
    info = await _info(client)
    if not info:
        return True
    first = info.get("first-entry")
    first_id = _text(first[0]) if first else ""
    indexed = not first_id or (bool(since) and not after(since, first_id))
    return indexed and int(info.get("entries-added", -1)) == int(info.get("length", 0))


async def holds(client: Redis, entry_id: str) -> bool:
    """Whether the entry `entry_id` is in the log."""
    found: Any = await client.xrange(EVENTS_STREAM, min=entry_id, max=entry_id, count=1)
    return bool(found)


async def append(client: Redis, index: str, fields: list[str], *, retained: int = EVENTS_RETAINED) -> str:
    """Add an entry to the log and to the index stream `index`, as the sessions do; its id."""
    script = client.register_script(APPEND)
    entry_id: Any = await script(keys=[EVENTS_STREAM, index, INDEXED_SINCE], args=[retained, "", "", *fields])
    return _text(entry_id)


async def page(client: Redis, stream: str, cursor: str, upto: str, count: int) -> list[tuple[str, Any]]:
    """Up to `count` raw entries of `stream` with `cursor` < id <= `upto`, in order."""
    found: Any = await client.xrange(stream, min=f"({cursor}", max=upto, count=count)
    return [(_text(entry_id), fields) for entry_id, fields in found]


async def _info(client: Redis) -> dict[str, Any] | None:
    try:
        info: dict[str, Any] = await client.xinfo_stream(EVENTS_STREAM)
    except ResponseError:
        return None  # no such key: nothing was ever logged (or Redis lost it)
    return {(_text(k)): v for k, v in info.items()}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value) if value is not None else ""
