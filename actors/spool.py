"""A session's durable spool: what it must write to PostgreSQL, kept on local disk until it is written.

whatsmeow acknowledges a message to WhatsApp before our handler sees it (../shared/notes/neonize.md), so
an event is safe only once it is on disk here. The file is an append-only log of length-prefixed pickled
entries. An append is one `write` on an `O_APPEND` descriptor: once it returns, the entry survives the
process being killed (it is in the kernel's page cache); it is not fsynced, so losing the node itself
(power, kernel) can lose what was not yet applied. The reader applies entries in order and `commit`s;
when everything is applied the file is truncated. Entries applied but not yet committed when a process
dies are applied again by the next one: every operation the session spools is idempotent.

Bounded: `max_bytes` (an append beyond it raises `SpoolFull`). A torn last record (a crash in the middle
of a write) is cut off when the spool is opened; a record that does not unpickle is moved to
`<file>.failed` with the rest of the log left intact.

`<file>.failed` holds what could not be applied (set aside by the journal), in the same record format and
mode 0600 like the spool: it holds messages. `failed` counts its entries (across process restarts);
`requeue_failed` moves them back to the end of the spool once their cause is fixed
(`whatsapp-bridge spool replay`). It renames the file before reading it, so an entry is requeued by one
call only; a crash between the append and the removal requeues those entries again, which is safe
because every entry is idempotent.
"""

from __future__ import annotations

import logging
import os
import pickle
import struct
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_HEADER = struct.Struct("<I")
MAX_ENTRY = 64 * 1024 * 1024


class SpoolFull(Exception):
    """The spool reached its size bound: nothing more can be made durable until it drains."""


class Spool:
    def __init__(self, path: Path, *, max_bytes: int) -> None:
        self.path = path
        self._max_bytes = max_bytes
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        self._size = os.fstat(self._fd).st_size
        self._read = 0  # offset of the first entry not yet committed
        self._pending = 0
        self._recover()
        self._failed = len(_records(self.failed_path))

    @property
    def failed_path(self) -> Path:
        return self.path.with_name(self.path.name + ".failed")

    @property
    def failed(self) -> int:
        """Entries set aside in `<file>.failed`, waiting for their cause to be fixed and a replay."""
        return self._failed

    @property
    def pending(self) -> int:
        """Entries appended and not yet committed."""
        return self._pending

    @property
    def size(self) -> int:
        return self._size

    def append(self, entry: Any) -> None:
        self._append_body(pickle.dumps(entry, protocol=pickle.HIGHEST_PROTOCOL))

    def _append_body(self, body: bytes) -> None:
        record = _HEADER.pack(len(body)) + body
        if self._size + len(record) > self._max_bytes:
            raise SpoolFull(f"spool {self.path.name} holds {self._size} bytes (limit {self._max_bytes})")
        written = os.write(self._fd, record)
        if written != len(record):  # a full disk: cut the partial record so the log stays readable
            os.ftruncate(self._fd, self._size)
            raise SpoolFull(f"spool {self.path.name}: short write ({written} of {len(record)} bytes)")
        self._size += len(record)
        self._pending += 1

    def head(self, limit: int) -> list[tuple[int, Any]]:
        """Up to `limit` entries from the oldest uncommitted one: (offset just past the entry, entry).

        An entry that does not unpickle is quarantined and comes back as None (commit past it).
        """
        out: list[tuple[int, Any]] = []
        offset = self._read
        while len(out) < limit and offset < self._size:
            length = _HEADER.unpack(os.pread(self._fd, _HEADER.size, offset))[0]
            body = os.pread(self._fd, length, offset + _HEADER.size)
            end = offset + _HEADER.size + length
            try:
                out.append((end, pickle.loads(body)))
            except Exception:
                self._quarantine(body, offset)
                out.append((end, None))
            offset = end
        return out

    def commit(self, end: int) -> None:
        """Everything before `end` (an offset `head` returned) is applied; forget it."""
        before = self._read
        self._read = end
        self._pending -= self._count(before, end)
        if self._read >= self._size:
            os.ftruncate(self._fd, 0)
            self._size = self._read = self._pending = 0

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    # ------------------------------------------------------------------ internals

    def _count(self, start: int, end: int) -> int:
        count = 0
        offset = start
        while offset < end:
            length = _HEADER.unpack(os.pread(self._fd, _HEADER.size, offset))[0]
            offset += _HEADER.size + length
            count += 1
        return count

    def _recover(self) -> None:
        """Count what an earlier process left; cut a torn last record."""
        offset = 0
        while offset < self._size:
            header = os.pread(self._fd, _HEADER.size, offset)
            length = _HEADER.unpack(header)[0] if len(header) == _HEADER.size else -1
            end = offset + _HEADER.size + length
            if length < 0 or length > MAX_ENTRY or end > self._size:
                log.warning("spool %s: cutting a torn record at byte %d", self.path.name, offset)
                os.ftruncate(self._fd, offset)
                self._size = offset
                break
            self._pending += 1
            offset = end
        if self._pending:
            log.info("spool %s: %d entries left by an earlier process", self.path.name, self._pending)

    def _quarantine(self, body: bytes, offset: int) -> None:
        log.error(
            "spool %s: entry at byte %d is unreadable; kept in %s.failed", self.path.name, offset, self.path
        )
        self.set_aside(body)

    def set_aside(self, body: bytes) -> None:
        """Keep a pickled entry that cannot be applied in `<file>.failed` (same record format, 0600)."""
        fd = os.open(self.failed_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.fchmod(fd, 0o600)  # also a file an older version left readable to others
            os.write(fd, _HEADER.pack(len(body)) + body)
        finally:
            os.close(fd)
        self._failed += 1

    def requeue_failed(self) -> int:
        """Append every set-aside entry to the spool again (in order); how many were requeued.

        What does not fit under `max_bytes` stays set aside, for a later replay.
        """
        taking = self.failed_path.with_name(self.failed_path.name + ".requeue")
        if not taking.exists():  # else a requeue died half-way: finish that one first
            try:
                self.failed_path.rename(taking)
            except FileNotFoundError:
                return 0
        self._failed = len(_records(self.failed_path))  # none, unless a requeue died half-way
        requeued = 0
        full = False
        for body in _records(taking):
            if not full:
                try:
                    self._append_body(body)
                    requeued += 1
                    continue
                except SpoolFull:
                    full = True
                    log.warning("spool %s: full; the rest stays in %s", self.path.name, self.failed_path.name)
            self.set_aside(body)
        taking.unlink()
        return requeued


def _records(path: Path) -> list[bytes]:
    """The bodies of a record file (a torn last record is ignored); none if there is no file."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    bodies = []
    offset = 0
    while offset + _HEADER.size <= len(data):
        length = _HEADER.unpack_from(data, offset)[0]
        end = offset + _HEADER.size + length
        if end > len(data):
            break
        bodies.append(data[offset + _HEADER.size : end])
        offset = end
    return bodies
