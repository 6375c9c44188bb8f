"""Reading the replayable log of live events (the `wa:events` stream the sessions write, `actors.bus`).

An entry's id (`<ms>-<n>`) is the `cursor` of the frame it becomes. Cursors compare as stream ids. The
log keeps the last `EVENT_STREAM_RETAINED` entries across all sessions (`actors.bus` trims it): a cursor
is resumable while its entry is still in the log (nothing after it was trimmed, and the log did not lose
its history).
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict, deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from kernel.wire import EVENTS_STREAM, F_DATA, F_KIND, F_PRODUCER, F_SEQ, F_SESSION, JSON

START = "0-0"
_ID = re.compile(r"^(\d{1,20})-(\d{1,20})$")
PAGE = 1000
MAX_PRODUCERS = 100_000
MAX_DUPLICATES = 10_000


def parse_cursor(text: str | None) -> tuple[int, int] | None:
    """A stream id as a comparable pair, or None if `text` is not one."""
    match = _ID.match(text or "")
    return (int(match[1]), int(match[2])) if match else None


def after(a: str, b: str) -> bool:
    """Whether stream id `a` comes after `b` (both valid ids)."""
    return (parse_cursor(a) or (0, 0)) > (parse_cursor(b) or (0, 0))


@dataclass(frozen=True, slots=True)
class Entry:
    id: str
    session_id: str
    kind: str
    payload: JSON
    producer: str
    seq: int


def decode(entry_id: bytes | str, fields: dict[bytes, bytes]) -> Entry:
    """An entry as the bus wrote it; ValueError (UnicodeDecodeError, JSON) for anything else."""
    text = {k.decode(): v.decode() for k, v in fields.items()}
    payload = json.loads(text[F_DATA])
    if not isinstance(payload, dict):
        raise ValueError("the event's data is not a JSON object")
    eid = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return Entry(eid, text[F_SESSION], text[F_KIND], payload, text[F_PRODUCER], int(text[F_SEQ]))


class Duplicates:
    """Recognises the copy of an event a session re-sent after losing Redis's reply.

    A producer's seqs reach the log in increasing order, so an entry whose seq is not above the last seen
    for its producer is a copy. Copies' ids are remembered (bounded) for replays to skip them too.
    """

    def __init__(self) -> None:
        self._last: OrderedDict[str, int] = OrderedDict()
        self._ids: set[str] = set()
        self._order: deque[str] = deque()

    def is_known_copy(self, entry_id: str) -> bool:
        return entry_id in self._ids

    def is_copy(self, entry: Entry) -> bool:
        if entry.id in self._ids:
            return True
        last = self._last.get(entry.producer)
        if last is not None and entry.seq <= last:
            self._ids.add(entry.id)
            self._order.append(entry.id)
            if len(self._order) > MAX_DUPLICATES:
                self._ids.discard(self._order.popleft())
            return True
        self._last[entry.producer] = entry.seq
        self._last.move_to_end(entry.producer)
        if len(self._last) > MAX_PRODUCERS:
            self._last.popitem(last=False)
        return False


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
