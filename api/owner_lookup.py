"""Owners of the sessions whose events the hub reads, looked up without stalling the event log.

Lookups run concurrently (at most `LOOKUPS` at a time) and a batch waits for the ones it started at most
`WAIT_S`; a lookup still running goes on in the background (its answer lands in `SessionOwners`'s cache)
and is not waited for again. A lookup that failed is not tried again for `RETRY_S`: meanwhile that
session's entries are skipped (a reconnecting client gets them by replay).
"""

from __future__ import annotations

import asyncio
import logging
import time

from api.metrics import Metrics
from api.owners import SessionOwners

log = logging.getLogger(__name__)

WAIT_S = 1.0
RETRY_S = 5.0
LOOKUPS = 4


class OwnerResolver:
    def __init__(self, owners: SessionOwners, metrics: Metrics) -> None:
        self._owners = owners
        self._metrics = metrics
        self._lookups: dict[str, asyncio.Task[str | None]] = {}
        self._slots = asyncio.Semaphore(LOOKUPS)
        self._retry_at: dict[str, float] = {}

    async def resolve(self, session_ids: set[str]) -> dict[str, str | None]:
        """The owners of `session_ids` known within WAIT_S (None: no such session); the others are absent."""
        if not session_ids:
            return {}
        now = time.monotonic()
        started = []
        for sid in session_ids:
            if sid not in self._lookups and self._retry_at.get(sid, 0.0) <= now:
                self._lookups[sid] = asyncio.create_task(self._lookup(sid), name=f"owner of {sid}")
                started.append(self._lookups[sid])
        if started:  # lookups still running from an earlier batch are not waited for again
            await asyncio.wait(started, timeout=WAIT_S)
        found: dict[str, str | None] = {}
        for sid in session_ids:
            task = self._lookups.get(sid)
            if task is None or not task.done():
                self._metrics.events_skipped.labels(why="owner_unknown").inc()
                continue
            del self._lookups[sid]
            if task.cancelled() or task.exception() is not None:
                self._retry_at[sid] = now + RETRY_S
                self._metrics.events_skipped.labels(why="owner_unknown").inc()
                continue
            self._retry_at.pop(sid, None)
            found[sid] = task.result()
        return found

    async def _lookup(self, session_id: str) -> str | None:
        async with self._slots:
            try:
                return await self._owners.owner(session_id)
            except Exception as err:
                log.debug("no owner for session %s yet (%s); retrying later", session_id, type(err).__name__)
                raise

    def cancel(self) -> None:
        for task in self._lookups.values():
            task.cancel()
        self._lookups.clear()
