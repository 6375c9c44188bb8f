"""Entries of the event log (`wa:events`, written by `actors.bus`) and the frames they become.

Import-light (no Redis): both the API's hub (`api.eventlog`, `api.hub_reader`) and the webhook
dispatchers (`actors.webhook_ingest`) read the same entries and render the same frames, so a WebSocket
client and a webhook receiver parse one shape.
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict, deque
from dataclasses import dataclass

from kernel.wire import F_DATA, F_KIND, F_PRODUCER, F_SEQ, F_SESSION, JSON

_ID = re.compile(r"^(\d{1,20})-(\d{1,20})$")
MAX_PRODUCERS = 100_000
MAX_DUPLICATES = 10_000

# Frame type of each event kind (`wa:msg:{id}` → `message`); an entry of another kind is skipped.
FRAME_TYPES = {
    "msg": "message",
    **{
        kind: kind
        for kind in ("qr", "status", "chat", "message_update", "presence", "call", "session_deleted")
    },
}


def parse_cursor(text: str | None) -> tuple[int, int] | None:
    """A stream id as a comparable pair, or None if `text` is not one."""
    match = _ID.match(text or "")
    return (int(match[1]), int(match[2])) if match else None


def frame_text(frame_type: str, session_id: str | None, payload: JSON, *, cursor: str) -> str:
    """A WebSocket frame (and a webhook's body): `{type, sessionId, **payload, cursor}`."""
    frame = {"type": frame_type, "sessionId": session_id, **payload, "cursor": cursor}
    return json.dumps(frame, separators=(",", ":"))


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
