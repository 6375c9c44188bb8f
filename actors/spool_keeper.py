"""A node's spool keeper: hands a session's files on this node to the session's next process elsewhere.

A session's spool, set-aside writes and outbox (`actors.spool`, `actors.bus`) are files on the disk of the
node its process ran on. When the session starts again on another node (a recycle Ray places elsewhere, a
move, a registry that recreated it), its new process asks every other live node's keeper for them
(`actors.spool_handover`) before it opens its own: so no write a previous process spooled is stranded.

One keeper per node: a detached actor named `spool-keeper-<node id>`, `num_cpus=0`, pinned to its node
(hard node affinity), `max_restarts=-1`, created on demand by the first session process on the node.
Invariants (tests/test_spool_handover.py):
- A file is handed over only when no process holds it: every process keeps a shared `flock` on the spool
  and outbox it has open (`Spool`), and the keeper takes an exclusive one, without waiting, for the time
  it reads them. A session whose files are held hands over nothing.
- The keeper deletes the files only when the new process says they are on its own disk (`forget`), and
  only if they did not change since they were read.
- Files of sessions that no longer exist (deleted while their node was away) are deleted by `sweep`
  once PostgreSQL answers, then every `SWEEP_INTERVAL_S`.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import ray

from actors.ports import Stores
from actors.private_files import ensure_private_folder, open_private
from actors.spool import read_records
from actors.tasks import TaskGroup
from kernel.ids import parse_session_id

log = logging.getLogger(__name__)

# What a session keeps on its node: the spool, what it set aside, the Redis outbox.
SUFFIXES = (".spool", ".spool.failed", ".outbox")
# The files a live process keeps open (and locked): either held means the session is live here.
HELD_SUFFIXES = (".spool", ".outbox")
SWEEP_FIRST_S = 30.0
SWEEP_RETRY_S = 60.0
SWEEP_INTERVAL_S = 3600.0
# A keeper leaves once it has been idle this many checks in a row: a live actor keeps its node busy, and
# Ray (the autoscaler, a drained node's raylet) stops a node only once nothing runs there. A session
# process makes sure its node's keeper exists right before it opens its spool (`actors.actor`).
IDLE_CHECK_S = 5.0
IDLE_CHECKS = 3


def keeper_name(node_id: str) -> str:
    return f"spool-keeper-{node_id}"


@dataclass(frozen=True, slots=True)
class HandedFile:
    """One file handed over: its suffix, when it was last written (orders files of one session across
    nodes), its identity (so `forget` deletes only what was read) and its record bodies."""

    suffix: str
    mtime_ns: int
    size: int
    bodies: tuple[bytes, ...]


class SpoolKeeper:
    """The keeper of one node's spool folder."""

    def __init__(self, folder: str, database_dsn: str, stores: Stores) -> None:
        self._folder = Path(folder)
        self._dsn = database_dsn
        self._stores = stores

    async def hand_over(self, session_id: str) -> list[HandedFile]:
        """The files of `session_id` on this node, unless a live process holds them (then none)."""
        sid = parse_session_id(session_id)
        with self._exclusive(sid) as locked:
            if locked is None:
                log.info("session %s: its files here are held by a live process; not handed over", sid)
                return []
            handed = []
            for suffix in SUFFIXES:
                path = self._folder / f"{sid}{suffix}"
                try:
                    st = path.stat()
                except FileNotFoundError:
                    continue
                # An empty one too: it goes once the new node has what matters.
                handed.append(HandedFile(suffix, st.st_mtime_ns, st.st_size, tuple(read_records(path))))
            return handed

    async def forget(self, session_id: str, handed: list[HandedFile]) -> int:
        """Delete the handed files that are unchanged since `hand_over` (now on the new node's disk)."""
        sid = parse_session_id(session_id)
        deleted = 0
        with self._exclusive(sid) as locked:
            if locked is None:
                return 0
            for item in handed:
                path = self._folder / f"{sid}{item.suffix}"
                try:
                    st = path.stat()
                except FileNotFoundError:
                    continue
                if (st.st_mtime_ns, st.st_size) == (item.mtime_ns, item.size):
                    path.unlink()
                    deleted += 1
        if deleted:
            log.info("session %s: %d files handed over and deleted here", sid, deleted)
        return deleted

    async def holds(self) -> int:
        """How many sessions have files here that no live process holds: files a next process has yet
        to take over (or that `sweep` has yet to delete)."""
        waiting = 0
        for sid in self._session_ids():
            with self._exclusive(sid) as locked:
                waiting += locked is not None
        return waiting

    async def idle(self) -> bool:
        """Nothing to keep here: no live process holds files on this node, and no file left by a gone
        process holds a record a session's next process must take over (empty ones do not count)."""
        for sid in self._session_ids():
            with self._exclusive(sid) as locked:
                if locked is None:
                    return False
                for suffix in SUFFIXES:
                    path = self._folder / f"{sid}{suffix}"
                    try:
                        if read_records(path):
                            return False
                    except FileNotFoundError:
                        continue
                    except Exception:  # unreadable: kept for an operator, and its keeper with it
                        return False
        return True

    async def sweep(self) -> int:
        """Delete the files of sessions that no longer exist (and no process holds); how many sessions.

        Raises what the database raises while it is away."""
        fleet = self._stores.fleet(self._dsn)
        swept = 0
        try:
            for sid in sorted(self._session_ids()):
                if await fleet.session_owner(sid) is not None:
                    continue
                with self._exclusive(sid) as locked:
                    if locked is None:
                        continue
                    for path in self._folder.glob(f"{sid}.*"):
                        path.unlink(missing_ok=True)  # a link is removed, never followed
                swept += 1
                log.info("session %s: gone; its files on this node deleted", sid)
        finally:
            await fleet.close()
        return swept

    # ------------------------------------------------------------------ internals

    def _session_ids(self) -> set[str]:
        ids: set[str] = set()
        with contextlib.suppress(FileNotFoundError):
            for path in self._folder.iterdir():
                try:
                    ids.add(parse_session_id(path.name.split(".", 1)[0]))
                except ValueError:
                    continue
        return ids

    @contextlib.contextmanager
    def _exclusive(self, sid: str) -> Iterator[list[int] | None]:
        """Exclusive locks on the session's held files (None when a live process holds one)."""
        ensure_private_folder(self._folder)
        fds: list[int] = []
        try:
            for suffix in HELD_SUFFIXES:
                try:
                    fd = open_private(self._folder / f"{sid}{suffix}", os.O_RDONLY)
                except FileNotFoundError:
                    continue
                fds.append(fd)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    yield None
                    return
            yield fds
        finally:
            for fd in fds:
                os.close(fd)  # closing releases the lock


class SpoolKeeperActor(SpoolKeeper):
    """The Ray shell: one per node (`actors.spool_handover.ensure_keeper`), sweeping in the background."""

    def __init__(self, folder: str, database_dsn: str, stores: Stores) -> None:
        super().__init__(folder, database_dsn, stores)
        if not logging.getLogger().handlers:  # its own process: what it decides shows in its log
            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        self._tasks = TaskGroup("spool keeper")
        self._tasks.spawn(self._sweep_loop(), "sweep")
        self._tasks.spawn(self._leave_when_idle(), "leave when idle")

    async def _leave_when_idle(self) -> None:
        idle = 0
        while idle < IDLE_CHECKS:
            await asyncio.sleep(IDLE_CHECK_S)
            idle = idle + 1 if await self.idle() else 0
        log.info("spool keeper: no session and no file to hand over on this node; leaving")
        ray.kill(ray.get_runtime_context().current_actor, no_restart=True)

    async def _sweep_loop(self) -> None:
        await asyncio.sleep(SWEEP_FIRST_S)
        while True:
            try:
                swept = await self.sweep()
            except Exception as err:  # the database away: try again soon
                log.info("spool keeper: sweep deferred (%s)", type(err).__name__)
                await asyncio.sleep(SWEEP_RETRY_S)
                continue
            if swept:
                log.info("spool keeper: files of %d deleted sessions removed", swept)
            await asyncio.sleep(SWEEP_INTERVAL_S)
