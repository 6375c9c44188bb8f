"""A session's lease: the fencing token that lets one process, and only one, hold a number's connection.

The lease is a row in PostgreSQL (`session_lease`: a generation, the owner that took it, an expiry by the
database's clock). Invariants (tests/test_fencing.py):
- A process takes the lease before it opens its spool or dials (`take`), and from then on every call of
  its store is checked against the generation it took, in the same transaction, under a lock a take
  holds exclusively: once another process has taken the lease, no write of this one lands (`LeaseLost`).
- Who may take it: a newer process of the same actor at once (Ray started it because the old one is gone,
  or cut off by a partition); another actor only once the lease has run out (`ttl_s` without a renewal)
  or was released by a graceful stop. Until then the newcomer waits without dialling. So a process that
  lost to another actor and is restarted by Ray (`max_restarts=-1`) does not dial again while that one
  lives: no `replaced` ping-pong.
- The holder renews every third of `ttl_s`. A renewal the database does not answer changes nothing (a
  PostgreSQL outage keeps sessions connected); a renewal or a write that finds the generation moved on,
  or WhatsApp's `replaced` with the lease gone, ends the process: its client stops without logout and
  Ray starts a fresh process, which waits as above.
- A spool is applied only by a process that holds the lease, before anything of its own: what an older
  generation spooled on this node is kept (it is what WhatsApp delivered), and its state entries are
  overwritten by the holder's own next ones.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from actors.ports import LeaseStore
from actors.tasks import TaskGroup
from kernel.errors import LeaseLost

log = logging.getLogger(__name__)

RELEASE_TIMEOUT_S = 2.0


class Lease:
    """Takes, renews and gives up one session's lease; `on_lost` ends the process."""

    def __init__(
        self,
        store: LeaseStore,
        tasks: TaskGroup,
        session_id: str,
        owner: str,
        ttl_s: float,
        on_lost: Callable[[str], Awaitable[None]],
    ) -> None:
        self._store = store
        self._tasks = tasks
        self._session_id = session_id
        self._owner = owner
        self._ttl_s = ttl_s
        self._on_lost = on_lost
        self.generation: int | None = None  # taken, and not known to be lost
        self._lost = False
        self._done = False  # lost or released: no more renewals

    async def take(self) -> None:
        """Return once this process holds the lease; meanwhile another process holds it, and this one
        waits. ServiceUnavailable while the database is away; SessionNotFound once the session is gone."""
        if self.generation is not None:
            return
        waiting = False
        while (generation := await self._store.take_lease(self._owner, self._ttl_s)) is None:
            if not waiting:
                log.warning(
                    "session %s: another process holds this number; waiting for its lease to end",
                    self._session_id,
                )
            waiting = True
            await asyncio.sleep(self._ttl_s / 3)
        self.generation = generation
        log.info("session %s: lease taken (generation %d)", self._session_id, generation)
        self._tasks.spawn(self._renew(), "lease")

    async def held(self) -> bool:
        """Whether this process still holds the lease (asked of the database; True when it cannot say)."""
        if self._lost:
            return False
        try:
            await self._store.renew_lease(self._ttl_s)
        except LeaseLost:
            return False
        except Exception:
            return True
        return True

    async def lose(self, why: str) -> None:
        """Another process holds the lease now: end this one (once), its client stopped without logout."""
        if self._lost:
            return
        self._lost = self._done = True
        log.warning(
            "session %s: lease (generation %s) lost: %s; stopping without logging out",
            self._session_id,
            self.generation,
            why,
        )
        await self._on_lost(f"lease lost ({why})")

    def guard(self, apply: Callable[[Any], Awaitable[None]]) -> Callable[[Any], Awaitable[None]]:
        """`apply` of the journal, ending the process when a write is refused for a lost lease."""

        async def guarded(entry: Any) -> None:
            try:
                await apply(entry)
            except LeaseLost:
                self._tasks.spawn(self.lose("a write was refused"), "lease lost")
                raise

        return guarded

    async def release(self) -> None:
        """Let another process take the lease at once (a graceful stop; best effort, bounded)."""
        if self.generation is None or self._done:
            return
        self._done = True
        try:
            await asyncio.wait_for(self._store.release_lease(), RELEASE_TIMEOUT_S)
        except Exception as err:  # it runs out by itself
            log.info("session %s: lease not released (%s)", self._session_id, type(err).__name__)

    async def _renew(self) -> None:
        failing = False
        while True:
            await asyncio.sleep(self._ttl_s / 3)
            if self._done:
                return
            try:
                await self._store.renew_lease(self._ttl_s)
            except LeaseLost:
                await self.lose("another process took it")
                return
            except Exception as err:  # the database away: the holder keeps its connection meanwhile
                if not failing:
                    log.warning("session %s: lease not renewed (%s)", self._session_id, type(err).__name__)
                failing = True
                continue
            if failing:
                log.info("session %s: lease renewed again", self._session_id)
            failing = False
