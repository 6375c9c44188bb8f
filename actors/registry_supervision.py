"""The registry's supervision of running actors: orphans, silent, stuck and pending ones.

Orphans are stopped after their grace, silent actors replaced, stuck ones restarted, pending ones only
counted; the guarantees are in `actors.registry`'s docstring.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import ray
from ray.actor import ActorHandle

from actors.ports import FleetStorePort
from actors.registry_config import CAPACITY_RESOURCE, RegistryConfig
from actors.registry_directory import ping
from actors.supervision import Pending, Since, Strikes, Writes
from kernel.domain import Placement

log = logging.getLogger(__name__)

CLOSE_TIMEOUT_S = 15.0
PENDING_LOG_EVERY_S = 60.0
PING_STEP_S = 0.02  # between two pings of a pass: 50 a second, spread wider only by a short interval


class Supervision:
    """What the passes learn about each running actor, and the steps that act on it."""

    def __init__(self, config: RegistryConfig, store: FleetStorePort) -> None:
        self._config = config
        self._store = store
        self._misses = Strikes()  # placed, not answering pings
        self._stuck = Strikes()  # answering, reporting `stuck`
        self._orphans = Since()  # actors without a row, since the first pass that saw none
        self._pending = Since()  # actors Ray has not placed, since first seen so
        self._silent = Since()  # placed actors not answering pings, since the first pass that saw it
        self._pending_logged = (0, 0.0)  # (count, monotonic time) last logged
        self._reports: dict[str, Placement] = {}  # the last ping of each placed session

    def observe_unplaced(self, unplaced: set[str] | None, *, log_changes: bool = False) -> None:
        """Run the pending clock of each unplaced session; None (the GCS cannot say) changes nothing."""
        if unplaced is None:
            return
        self._pending.observe(unplaced)
        if log_changes:
            self._log_pending()

    def pending(self) -> Pending:
        ids = tuple(self._pending.keys())
        stalled = self._pending.older_than(self._config.stall_s) | self._silent.older_than(
            self._config.stall_s
        )
        return Pending(count=len(ids), oldest_s=self._pending.oldest(), session_ids=ids, stalled=len(stalled))

    def writes(self) -> Writes:
        """The sessions' journals as of the last pass: spooled, set aside, refused by the database."""
        reports = list(self._reports.values())
        return Writes(
            spooled=sum(p.spooled for p in reports),
            failed=sum(p.failed for p in reports),
            refused=tuple(sorted({p.refused for p in reports if p.refused})),
            sessions_failed=tuple(sorted(p.session_id for p in reports if p.failed)),
        )

    def rows_unknown(self) -> None:
        """A pass could not read the rows: nobody's orphan grace may run on."""
        self._orphans.clear()

    def forget(self, session_id: str) -> None:
        self._misses.clear(session_id)
        self._stuck.clear(session_id)
        self._orphans.forget(session_id)
        self._silent.forget(session_id)

    async def stop_orphans(self, orphans: dict[str, ActorHandle[Any]], unplaced: set[str] | None) -> int:
        """Stop the orphans whose grace is over and whose row is still absent; how many were stopped."""
        grace = self._config.orphan_grace_s
        for sid in sorted(self._orphans.observe(orphans)):
            log.warning(
                "registry: session %s has an actor but no row; stopping it (no logout) in %.0fs"
                " unless its row appears",
                sid,
                grace,
            )
        due = [sid for sid in orphans if self._orphans.age(sid) >= grace]
        results = await asyncio.gather(
            *(self._stop_orphan(sid, orphans[sid], placed=sid not in (unplaced or ())) for sid in due),
            return_exceptions=True,
        )
        stopped = 0
        for sid, result in zip(due, results, strict=True):
            if isinstance(result, BaseException):
                log.error("registry: stopping orphan session %s failed", sid, exc_info=result)
            elif result:
                stopped += 1
        return stopped

    async def _stop_orphan(self, session_id: str, handle: ActorHandle[Any], *, placed: bool) -> bool:
        """Close (no logout) and kill an orphan, unless a fresh look finds its row; whether it was stopped."""
        if await self._store.session_owner(session_id) is not None:
            log.info("registry: session %s has a row again; not an orphan", session_id)
            self._orphans.forget(session_id)
            return False
        log.warning("registry: session %s has had no row for its grace; stopping it, no logout", session_id)
        if placed:  # an actor Ray never placed has no client to close
            try:
                await asyncio.wait_for(handle.close.remote(False), CLOSE_TIMEOUT_S)
            except Exception:
                log.warning("registry: orphan %s did not close cleanly", session_id, exc_info=True)
        ray.kill(handle, no_restart=True)
        self.forget(session_id)
        return True

    async def supervise(
        self, handles: dict[str, ActorHandle[Any]], unplaced: set[str] | None
    ) -> tuple[int, int]:
        """Ping the placed actors; replace the silent, restart the stuck. (replaced, restarted)."""
        if unplaced is None:
            return 0, 0  # waiting and wedged look alike: count nobody against Ray's placement
        placed = {sid: h for sid, h in handles.items() if sid not in unplaced}
        self._misses.keep_only(placed)
        self._stuck.keep_only(placed)
        pings = await self._ping_spread(placed)
        self._reports = {p.session_id: p for p in pings if p.alive}
        self._silent.observe(p.session_id for p in pings if not p.alive)
        replaced = restarted = 0
        booting: list[str] = []
        limit = self._config.unresponsive_passes
        for placement in pings:
            sid = placement.session_id
            if not placement.alive:
                self._stuck.clear(sid)
                if self._misses.hit(sid) >= limit:
                    log.warning("registry: session %s unresponsive for %d passes; replacing it", sid, limit)
                    ray.kill(placed[sid], no_restart=True)  # its name frees; the next pass creates it anew
                    self._misses.clear(sid)
                    replaced += 1
                continue
            self._misses.clear(sid)
            if placement.stuck:
                if self._stuck.hit(sid) >= limit:
                    log.warning(
                        "registry: session %s stuck for %d passes (%s); restarting its process",
                        sid,
                        limit,
                        placement.stuck,
                    )
                    ray.kill(placed[sid], no_restart=False)  # a fresh process under the same actor
                    self._stuck.clear(sid)
                    restarted += 1
                continue
            self._stuck.clear(sid)
            if not placement.ready:
                booting.append(sid)
        if booting:
            log.info(
                "registry: %d sessions not ready (booting or waiting for the database), e.g. %s",
                len(booting),
                ", ".join(sorted(booting)[:5]),
            )
        return replaced, restarted

    async def _ping_spread(self, placed: dict[str, ActorHandle[Any]]) -> list[Placement]:
        """Ping each actor, one every PING_STEP_S at most, within half a pass interval.

        All at once, 100 pings woke 100 processes together every pass: the node's /health p99 went from
        60-99 ms to 235-383 ms during those bursts (tests/benchmarks/README.md, issue 24).
        """
        step = min(PING_STEP_S, self._config.reconcile_interval_s / 2 / max(1, len(placed)))

        async def one(index: int, session_id: str, handle: ActorHandle[Any]) -> Placement:
            await asyncio.sleep(index * step)
            return await ping(session_id, handle)

        return list(await asyncio.gather(*(one(i, sid, h) for i, (sid, h) in enumerate(placed.items()))))

    def _log_pending(self) -> None:
        count, at = self._pending_logged
        now = time.monotonic()
        if len(self._pending) == count and (count == 0 or now - at < PENDING_LOG_EVERY_S):
            return
        self._pending_logged = (len(self._pending), now)
        if not self._pending:
            log.info("registry: every session actor is placed")
            return
        log.warning(
            "registry: %d sessions wait for a node with a free %s unit (or a restart); oldest %.0fs",
            len(self._pending),
            CAPACITY_RESOURCE,
            self._pending.oldest() or 0.0,
        )
