"""The figures `/metrics` shows from PostgreSQL and the registry, refreshed in the background.

A scrape reads only memory: however many scrapers, however often, and whether or not PostgreSQL or the
registry answers, it costs no query and never waits. Each API process refreshes every METRICS_REFRESH_S;
what cannot be read in a pass keeps its last value, and `wab_metrics_refreshed_timestamp_seconds` says
when the database's figures were last read.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from actors.tasks import TaskGroup
from api.database import Database
from api.handles import SessionActors
from api.metrics import Metrics
from kernel.domain import SessionStatus
from kernel.errors import WaError
from kernel.outages import REFUSES_WRITES, refusals
from persistence import repo
from persistence.db import read_only

log = logging.getLogger(__name__)

REGISTRY_TIMEOUT_S = 2.0
T = TypeVar("T")


class MetricsRefresher:
    def __init__(self, db: Database, actors: SessionActors, metrics: Metrics, interval_s: float) -> None:
        self._db = db
        self._actors = actors
        self._metrics = metrics
        self._interval_s = interval_s
        self._tasks = TaskGroup("metrics")

    def start(self) -> None:
        self._tasks.spawn(self._run(), "refresh")

    async def stop(self) -> None:
        await self._tasks.cancel_all()

    async def _run(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception as err:  # one bad pass never ends the loop
                log.warning("metrics refresh failed: %s", type(err).__name__)
            await asyncio.sleep(self._interval_s)

    async def refresh(self) -> None:
        """One pass: sessions by status, waiting for capacity, writes spooled and refused."""
        m = self._metrics
        db_ok = True
        try:
            counts = await self._db.run(repo.session_status_counts)
            read_only_now: bool | None = await self._db.run(read_only)
        except WaError:
            db_ok, counts, read_only_now = False, None, None
        if counts is not None:
            for state in SessionStatus:
                m.sessions.labels(status=state.value).set(counts.get(state.value, 0))
        if db_ok:
            m.refreshed.set_to_current_time()
        pending, journals = await asyncio.gather(
            _bounded(lambda: self._actors.pending(timeout_s=REGISTRY_TIMEOUT_S)),
            _bounded(lambda: self._actors.writes(timeout_s=REGISTRY_TIMEOUT_S)),
        )
        if pending is not None:
            m.sessions_pending.set(pending.count)
            m.sessions_pending_oldest.set(pending.oldest_s or 0.0)
        await m.webhooks.refresh(self._db)
        if journals is not None:
            m.writes_spooled.set(journals.spooled)
            m.writes_failed.set(journals.failed)
        if journals is not None and read_only_now is not None:
            refused = refusals(journals.refused, read_only_now)
            for reason in REFUSES_WRITES:
                m.writes_refused.labels(reason=str(reason)).set(1 if reason in refused else 0)


async def _bounded(call: Callable[[], Awaitable[T]]) -> T | None:
    """The registry's answer, or None when it is away or slow (its figures keep their last values).

    The call is made here, not by the caller: a refresh cancelled before this task ran leaves no
    coroutine that was never awaited."""
    try:
        return await asyncio.wait_for(call(), REGISTRY_TIMEOUT_S)
    except (WaError, TimeoutError):
        return None
