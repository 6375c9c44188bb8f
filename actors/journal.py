"""Every write a session makes to PostgreSQL goes through its journal: spooled first, applied in order.

`write(entry)` returns once the entry is durable in the session's spool (`actors.spool`); one task applies
entries to the database strictly in order, each through the session's `apply`. An entry that meets an
outage (`kernel.outages`: the database unreachable, read-only, full, a deadlock... the same meaning the
API uses) stays at the head and is retried with capped, jittered backoff, so an outage of any length
loses nothing and keeps the order; `outage` says what it waits for meanwhile. A session whose row is
gone (`SessionNotFound`) drops its entries. An entry that fails for any other reason (a bug, bad data)
is set aside in the spool's `.failed` file (0600), logged with its error's class and SQLSTATE, counted
(`failed`, reported to the registry, `/health` and `/metrics`), and the rest goes on: one bad entry
never blocks a session. `replay_failed` puts those entries back at the end once their cause is fixed.

With `together`, a run of pending entries it admits is applied by one call, in one transaction (all or
none; `actors.writes.applier` publishes their frames after its commit): one lease check and one commit
for the run instead of one per entry. A run that fails for any reason but an outage is applied again
entry by entry, as above, so a bad entry is still set aside alone.
"""

from __future__ import annotations

import asyncio
import logging
import random
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from actors.spool import Spool
from actors.tasks import TaskGroup
from kernel.errors import LeaseLost, ServiceUnavailable, SessionNotFound
from kernel.outages import Outage, Service, Why, describe, outage

log = logging.getLogger(__name__)

BATCH = 64
RETRY_MIN_S = 0.2
RETRY_MAX_S = 5.0

Apply = Callable[[Any], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Together:
    """How a run of entries is applied at once: `apply(entries)`, all or none, for entries `admits`."""

    apply: Callable[[Sequence[Any]], Awaitable[None]]
    admits: Callable[[Any], bool]


class _Waiting(Exception):
    """The head entry met an outage: keep it and retry."""

    def __init__(self, outage: Outage) -> None:
        super().__init__(f"{outage.service} {outage.why}")
        self.outage = outage


class Journal:
    def __init__(self, spool: Spool, apply: Apply, label: str, together: Together | None = None) -> None:
        self._spool = spool
        self._apply = apply
        self._together = together
        self._label = label
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        self._tasks = TaskGroup(f"journal {label}")
        self._running = False
        self.outage: Outage | None = None  # what the head entry waits for, None while applying

    @property
    def failed(self) -> int:
        """Entries set aside (bugs, bad data), waiting in `.failed` for `replay_failed`."""
        return self._spool.failed

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

    def replay_failed(self) -> int:
        """Put the set-aside entries back at the end of the journal (their cause is fixed); how many."""
        count = self._spool.requeue_failed()
        if count:
            log.info("%s: %d set-aside writes requeued", self._label, count)
            self._drained.clear()
            self._wake.set()
        return count

    async def flush(self) -> None:
        """Apply everything pending now, in order; ServiceUnavailable as soon as an outage stops it."""
        try:
            await self._flush()
        except _Waiting as waiting:
            raise ServiceUnavailable(
                f"Writes wait: {waiting.outage.service} {waiting.outage.why}"
            ) from waiting

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

    async def _run(self) -> None:
        delay = RETRY_MIN_S
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._flush()
            except LeaseLost:
                log.warning(
                    "%s: another process holds the lease; %d writes stay spooled", self._label, self.backlog
                )
                return
            except _Waiting as waiting:
                if self.outage != waiting.outage:
                    log.warning(
                        "%s: writes wait: %s %s; %d spooled",
                        self._label,
                        waiting.outage.service,
                        waiting.outage.why,
                        self.backlog,
                    )
                self.outage = waiting.outage
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, RETRY_MAX_S)
                self._wake.set()
                continue
            if self.outage is not None:
                log.info("%s: the database takes writes again; spooled writes applied", self._label)
            self.outage = None
            delay = RETRY_MIN_S
            if not self._spool.pending:
                self._drained.set()

    async def _flush(self) -> None:
        while True:
            batch = self._spool.head(BATCH)
            if not batch:
                return
            while batch:
                run = self._run_at_head(batch)
                if len(run) > 1 and await self._apply_together([entry for _, entry in run]):
                    self._spool.commit(run[-1][0])
                else:
                    for end, entry in run:
                        await self._apply_one(entry)
                        self._spool.commit(end)
                batch = batch[len(run) :]

    def _run_at_head(self, batch: list[tuple[int, Any]]) -> list[tuple[int, Any]]:
        """The entries at the head of `batch` applied together (at least the first one)."""
        together = self._together
        count = 0
        if together is not None:
            while count < len(batch) and batch[count][1] is not None and together.admits(batch[count][1]):
                count += 1
        return batch[: max(count, 1)]

    async def _apply_together(self, entries: list[Any]) -> bool:
        """Apply `entries` in one call; False when that failed for a cause other than an outage."""
        assert self._together is not None
        try:
            await self._together.apply(entries)
        except LeaseLost:
            raise
        except Exception as err:
            found = _waits_for(err)
            if found is not None:
                raise _Waiting(found) from err
            log.info(
                "%s: %d writes together failed (%s); applying them one by one",
                self._label,
                len(entries),
                describe(err),
            )
            return False
        return True

    async def _apply_one(self, entry: Any) -> None:
        if entry is None:  # unreadable: already set aside (and counted) by the spool
            return
        try:
            await self._apply(entry)
        except SessionNotFound:
            log.info("%s: the session's row is gone; dropping %s", self._label, type(entry).__name__)
        except LeaseLost:
            raise  # this process may not write any more: the entry stays in the spool, unapplied
        except Exception as err:
            found = _waits_for(err)
            if found is not None:
                raise _Waiting(found) from err
            self._spool.set_aside(entry)
            # The error's text is left out: PostgreSQL's DETAIL quotes the failing row, a message's content.
            log.error(
                "%s: applying %s failed (%s); set aside in %s (%d there), replayed by"
                " `whatsapp-bridge spool replay`\n%s",
                self._label,
                type(entry).__name__,
                describe(err),
                self._spool.failed_path.name,
                self._spool.failed,
                "".join(traceback.format_tb(err.__traceback__)),
            )


def _waits_for(err: Exception) -> Outage | None:
    """The outage `err` means (the entries wait for it), None for anything else (a bug, bad data)."""
    found = outage(err)
    if found is None and isinstance(err, ServiceUnavailable):
        found = Outage(Service.DATABASE, Why.UNREACHABLE)  # decided by the store, cause unknown
    return found
