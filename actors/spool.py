"""A session's durable spool: what it must write to PostgreSQL, kept on local disk until it is written.

whatsmeow acknowledges a message to WhatsApp before our handler sees it (../shared/notes/neonize.md), so
an event is safe only once it is on disk here. An append is one `write` on an `O_APPEND` descriptor: once
it returns, the entry survives the process being killed (it is in the kernel's page cache); it is not
fsynced, so losing the node itself (power, kernel) can lose what was not yet applied. The reader applies
entries in order and `commit`s; when everything is applied the file is cut back to its header. Entries
applied but not yet committed when a process dies are applied again by the next one: every operation the
session spools is idempotent.

The file lives in a private folder (`actors.private_files`: 0700, ours, never through a link). Its format
is data, never code: a header (`WABSPOOL`, the format version as a little-endian u16), then records, each
a little-endian u32 length and that many bytes of UTF-8 JSON, one entry, encoded by the spool's `Codec`
(`actors.writes.WRITES` for the journal). A file of a newer format than `FORMAT`, or without the header
(such as the pickled spool of a release before format 1), is refused with `SpoolUnreadable` and left as
it is: it is never read, never quarantined, and the session does not start without it.

An open spool holds a shared `flock` on its file: a node's spool keeper (`actors.spool_keeper`) hands a
session's files to its next process on another node only while no process holds them.

Bounded: `max_bytes` (an append beyond it raises `SpoolFull`). A torn last record (a crash in the middle
of a write) is cut off when the spool is opened; a record that does not decode is moved to
`<file>.failed` with the rest of the log left intact.

`<file>.failed` holds what could not be applied (set aside by the journal), in the same format and mode
0600 like the spool: it holds messages. `failed` counts its entries (across process restarts);
`requeue_failed` moves them back to the end of the spool once their cause is fixed
(`whatsapp-bridge spool replay`). It renames the file before reading it, so an entry is requeued by one
call only; a crash between the append and the removal requeues those entries again, which is safe
because every entry is idempotent.
"""

from __future__ import annotations

import fcntl
import logging
import os
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from actors.private_files import ensure_private_folder, open_private

log = logging.getLogger(__name__)

MAGIC = b"WABSPOOL"
FORMAT = 1
_FILE = struct.Struct("<8sH")
_HEADER = struct.Struct("<I")
MAX_ENTRY = 64 * 1024 * 1024


class SpoolFull(Exception):
    """The spool reached its size bound: nothing more can be made durable until it drains."""


class SpoolUnreadable(Exception):
    """A spool file this release must not read: another format, or a newer version of ours."""


@dataclass(frozen=True, slots=True)
class Codec:
    """How a spool turns its entries into JSON bytes and back (decode raises ValueError on bad data)."""

    encode: Callable[[Any], bytes]
    decode: Callable[[bytes], Any]


def file_header() -> bytes:
    return _FILE.pack(MAGIC, FORMAT)


def check_header(path: Path, header: bytes) -> None:
    """SpoolUnreadable unless `header` (the file's first bytes) opens a spool this release reads."""
    magic, version = _FILE.unpack(header) if len(header) == _FILE.size else (b"", 0)
    if magic != MAGIC:
        log.error("spool %s: not a spool of format %d; left untouched, not read", path, FORMAT)
        raise SpoolUnreadable(
            f"{path} is not a spool of format {FORMAT} (a release before it pickled its spool, which is"
            " never read: it could run code); apply it with that release, or move it away"
        )
    if version > FORMAT:
        log.error("spool %s: format %d is newer than this release's %d; not read", path, version, FORMAT)
        raise SpoolUnreadable(
            f"{path} has spool format {version}, newer than this release reads ({FORMAT}): run the newer"
            " release until it is applied, or move it away"
        )


def pending_bytes(path: Path) -> int:
    """Bytes of entries a spool file holds (0: none, or no file)."""
    try:
        return max(0, path.stat().st_size - _FILE.size)
    except FileNotFoundError:
        return 0


class Spool:
    def __init__(self, path: Path, *, codec: Codec, max_bytes: int) -> None:
        self.path = path
        self._codec = codec
        self._max_bytes = max_bytes
        ensure_private_folder(path.parent)
        self._fd = open_private(path, os.O_RDWR | os.O_CREAT | os.O_APPEND)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_SH)  # held while open: no keeper hands it over meanwhile
            self._size = os.fstat(self._fd).st_size
            if self._size == 0:  # new, or left empty by a release before format 1
                os.write(self._fd, file_header())
                self._size = _FILE.size
            check_header(path, os.pread(self._fd, _FILE.size, 0))
            self._read = _FILE.size  # offset of the first entry not yet committed
            self._pending = 0
            self._recover()
            self._failed = len(read_records(self.failed_path))
        except BaseException:
            self.close()
            raise

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

    def append(self, entry: Any) -> None:
        self._append_body(self._codec.encode(entry))

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

        An entry that does not decode is quarantined and comes back as None (commit past it).
        """
        out: list[tuple[int, Any]] = []
        offset = self._read
        while len(out) < limit and offset < self._size:
            length = _HEADER.unpack(os.pread(self._fd, _HEADER.size, offset))[0]
            body = os.pread(self._fd, length, offset + _HEADER.size)
            end = offset + _HEADER.size + length
            try:
                out.append((end, self._codec.decode(body)))
            except (ValueError, TypeError, KeyError):
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
            self.clear()

    def clear(self) -> None:
        """Forget every entry (the file keeps its header)."""
        os.ftruncate(self._fd, _FILE.size)
        self._size = self._read = _FILE.size
        self._pending = 0

    def rewrite(self, entries: Iterable[Any]) -> None:
        """Replace the whole file with `entries` (SpoolFull past `max_bytes`); the old file stays intact
        until the new one takes its name."""
        records = [file_header()]
        for entry in entries:
            body = self._codec.encode(entry)
            records.append(_HEADER.pack(len(body)) + body)
        data = b"".join(records)
        if len(data) > self._max_bytes:
            raise SpoolFull(f"spool {self.path.name}: {len(data)} bytes to keep (limit {self._max_bytes})")
        fresh = self.path.with_name(self.path.name + ".new")
        fd = open_private(fresh, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            os.write(fd, data)
            os.replace(fresh, self.path)
        except BaseException:
            os.close(fd)
            raise
        self.close()
        self._fd = fd
        self._size = len(data)
        self._read = _FILE.size
        self._pending = len(records) - 1

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
        offset = _FILE.size
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
            "spool %s: entry at byte %d does not decode; kept in %s.failed", self.path.name, offset, self.path
        )
        self._set_aside_body(body)

    def set_aside(self, entry: Any) -> None:
        """Keep an entry that cannot be applied in `<file>.failed` (same format, 0600)."""
        self._set_aside_body(self._codec.encode(entry))

    def _set_aside_body(self, body: bytes) -> None:
        fd = open_private(self.failed_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            if os.fstat(fd).st_size == 0:
                os.write(fd, file_header())
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
        self._failed = len(read_records(self.failed_path))  # none, unless a requeue died half-way
        requeued = 0
        full = False
        for body in read_records(taking):
            if not full:
                try:
                    self._append_body(body)
                    requeued += 1
                    continue
                except SpoolFull:
                    full = True
                    log.warning("spool %s: full; the rest stays in %s", self.path.name, self.failed_path.name)
            self._set_aside_body(body)
        taking.unlink()
        return requeued


def write_records(path: Path, bodies: Iterable[bytes]) -> None:
    """Replace `path` with a spool-format file of `bodies`; the old file stays intact until the new one
    takes its name."""
    data = memoryview(file_header() + b"".join(_HEADER.pack(len(body)) + body for body in bodies))
    fresh = path.with_name(path.name + ".new")
    fd = open_private(fresh, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        while data:
            data = data[os.write(fd, data) :]
    finally:
        os.close(fd)
    os.replace(fresh, path)


def read_records(path: Path) -> list[bytes]:
    """The record bodies of a spool-format file (a torn last record is ignored); none if no file.

    SpoolUnreadable for a file of another format or a newer version.
    """
    try:
        fd = open_private(path, os.O_RDONLY)
    except FileNotFoundError:
        return []
    try:
        size = os.fstat(fd).st_size
        data = os.pread(fd, size, 0)
    finally:
        os.close(fd)
    if not data:
        return []
    check_header(path, data[: _FILE.size])
    bodies = []
    offset = _FILE.size
    while offset + _HEADER.size <= len(data):
        length = _HEADER.unpack_from(data, offset)[0]
        end = offset + _HEADER.size + length
        if end > len(data):
            break
        bodies.append(data[offset + _HEADER.size : end])
        offset = end
    return bodies
