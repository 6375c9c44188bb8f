"""The registry's supervision steps: orphans, silent, stuck and pending actors.

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

from actors.actor_states import unplaced_names
from actors.ports import FleetStorePort
from actors.registry_config import CAPACITY_RESOURCE, RegistryConfig
from actors.supervision import Since, Strikes
from kernel.domain import Placement
from kernel.ids import session_id_of_actor

log = logging.getLogger(__name__)

PING_TIMEOUT_S = 5.0
CLOSE_TIMEOUT_S = 15.0
PENDING_LOG_EVERY_S = 60.0


class RegistrySupervision:
    """The steps of a reconcile pass that act on running actors; `SessionRegistry` holds the state."""

    _config: RegistryConfig
    _misses: Strikes
    _stuck: Strikes
    _orphans: Since
    _pending: Since
    _pending_logged: tuple[int, float]
    _reports: dict[str, Placement]  # the last ping of each placed session (journals: `writes()`)
    _store: FleetStorePort

    async def _stop_orphans(self, orphans: dict[str, ActorHandle[Any]], unplaced: set[str] | None) -> int:
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
        self._forget(session_id)
        return True

    async def _supervise(
        self, handles: dict[str, ActorHandle[Any]], unplaced: set[str] | None
    ) -> tuple[int, int]:
        """Ping the placed actors; replace the silent, restart the stuck. (replaced, restarted)."""
        if unplaced is None:
            return 0, 0  # waiting and wedged look alike: count nobody against Ray's placement
        placed = {sid: h for sid, h in handles.items() if sid not in unplaced}
        self._misses.keep_only(placed)
        self._stuck.keep_only(placed)
        pings = await asyncio.gather(*(self._ping(sid, h) for sid, h in placed.items()))
        self._reports = {p.session_id: p for p in pings if p.alive}
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

    def _unplaced(self) -> set[str] | None:
        """Session ids whose actor Ray has not placed; None when the GCS cannot say."""
        try:
            names = unplaced_names(self._config.namespace)
        except Exception:
            log.warning("registry: cannot read actor states from the GCS", exc_info=True)
            return None
        return {sid for sid in map(session_id_of_actor, names) if sid is not None}

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

    def _forget(self, session_id: str) -> None:
        self._misses.clear(session_id)
        self._stuck.clear(session_id)
        self._orphans.forget(session_id)

    async def _ping(self, session_id: str, handle: ActorHandle[Any]) -> Placement:
        try:
            placement: Placement = await asyncio.wait_for(handle.ping.remote(), PING_TIMEOUT_S)
            return placement
        except Exception:
            return absent_placement(session_id)


def absent_placement(session_id: str) -> Placement:
    return Placement(session_id, None, None, None, alive=False, ready=False)
