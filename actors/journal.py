"""Every write a session makes to PostgreSQL goes through its journal: spooled first, applied in order.

`write(entry)` returns once the entry is durable in the session's spool (`actors.spool`); one task applies
entries to the database strictly in order, each through the session's `apply`. An entry whose database
is unavailable (`ServiceUnavailable`) stays at the head and is retried with capped, jittered backoff, so
an outage of any length loses nothing and keeps the order; a session whose row is gone
(`SessionNotFound`) drops its entries; an entry that fails for any other reason (a bug, bad data) is set
aside in the spool's `.failed` file, logged, and the rest goes on: one bad entry never blocks a session.
"""

from __future__ import annotations

import asyncio
import logging
import pickle
import random
from collections.abc import Awaitable, Callable
from typing import Any

from actors.errors import ServiceUnavailable, SessionNotFound
from actors.spool import Spool
from actors.tasks import TaskGroup

log = logging.getLogger(__name__)

BATCH = 64
RETRY_MIN_S = 0.2
RETRY_MAX_S = 5.0

Apply = Callable[[Any], Awaitable[None]]


class Journal:
    def __init__(self, spool: Spool, apply: Apply, label: str) -> None:
        self._spool = spool
        self._apply = apply
        self._label = label
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        self._tasks = TaskGroup(f"journal {label}")
        self._running = False
        self.db_ok = True
        self.failed = 0

    @property
    def backlog(self) -> int:
        """Entries written and not yet applied."""
        return self._spool.pending

    def write(self, entry: Any) -> None:
        """Make `entry` durable (SpoolFull past the bound) and have it applied in order."""
        self._spool.append(entry)
        self._drained.clear()
        self._wake.set()

    def start(self) -> None:
        """Apply entries in the background from now on (idempotent)."""
        if not self._running:
            self._running = True
            self._wake.set()
            self._tasks.spawn(self._run(), "apply")

    async def flush(self) -> None:
        """Apply everything pending now, in order; ServiceUnavailable as soon as the database fails us."""
        while True:
            batch = self._spool.head(BATCH)
            if not batch:
                return
            for end, entry in batch:
                await self._apply_one(entry)
                self._spool.commit(end)

    async def wait_drained(self, timeout_s: float) -> bool:
        """True once nothing is pending (within `timeout_s`)."""
        if not self._spool.pending:
            return True
        try:
            await asyncio.wait_for(self._drained.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        await self._tasks.cancel_all()
        self._running = False
        self._spool.close()

    def discard(self) -> None:
        """Delete the spool (the session is deleted: nothing in it is wanted any more)."""
        self._spool.path.unlink(missing_ok=True)

    async def _run(self) -> None:
        delay = RETRY_MIN_S
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self.flush()
            except ServiceUnavailable as err:
                if self.db_ok:
                    log.warning(
                        "%s: database unavailable (%s); %d writes spooled", self._label, err, self.backlog
                    )
                self.db_ok = False
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, RETRY_MAX_S)
                self._wake.set()
                continue
            if not self.db_ok:
                log.info("%s: database back; spooled writes applied", self._label)
            self.db_ok = True
            delay = RETRY_MIN_S
            if not self._spool.pending:
                self._drained.set()

    async def _apply_one(self, entry: Any) -> None:
        if entry is None:  # unreadable: already set aside by the spool
            self.failed += 1
            return
        try:
            await self._apply(entry)
        except ServiceUnavailable:
            raise
        except SessionNotFound:
            log.info("%s: the session's row is gone; dropping %s", self._label, type(entry).__name__)
        except Exception:
            self.failed += 1
            log.exception("%s: applying %s failed; set aside", self._label, type(entry).__name__)
            self._spool.set_aside(pickle.dumps(entry, protocol=pickle.HIGHEST_PROTOCOL))
