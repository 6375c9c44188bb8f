"""The session's heartbeat alone, on real PostgreSQL: what the API reads of it (`Session.live`, the QR),
that it runs out by itself when its process dies without a word, and that a stop deletes only its own."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from actors.heartbeat import Beat, Heartbeat
from actors.tasks import TaskGroup
from api.database import Database
from kernel.domain import SessionView
from persistence import reads
from persistence.db import create_engine, session_factory
from persistence.session_store import SessionStore
from tests.raykit import eventually, insert_session

pytestmark = pytest.mark.timeout(60)

INTERVAL_S = 0.2


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    engine = create_engine(database_url)
    yield Database(session_factory(engine))
    await engine.dispose()


async def test_live_follows_the_beat_and_runs_out_when_the_process_dies(
    database_url: str, database: Database
) -> None:
    sid = await insert_session(database_url, "beat-user")

    async def view() -> SessionView:
        return await database.run(reads.session_status, "beat-user", sid)

    async with SessionStore(database_url, sid) as store, SessionStore(database_url, sid) as successor:
        first, second = TaskGroup("first"), TaskGroup("second")
        beat = Heartbeat(store, first, sid, INTERVAL_S)
        expires = datetime.now(UTC) + timedelta(seconds=20)
        beat.show(Beat(False, qr="2@code", qr_expires_at=expires))
        assert await beat.stored(2.0)
        showing = await view()
        assert (showing.live, showing.qr, showing.qr_expires_at) == (False, "2@code", expires)
        beat.show(Beat(True))
        assert await beat.stored(2.0)
        assert ((await view()).live, (await view()).qr) == (True, None)

        await first.cancel_all()  # the process dies: no stop, no last word
        gone = await eventually(view, lambda v: not v.live, timeout=5 * INTERVAL_S * 3, every=0.05)
        assert gone.qr is None

        # The next process beats; the dead one's late stop does not delete its row.
        after = Heartbeat(successor, second, sid, INTERVAL_S)
        after.show(Beat(True))
        assert await after.stored(2.0)
        await beat.stop()
        assert (await view()).live
        await after.stop()  # a clean stop: not live at once
        assert not (await view()).live
        await second.cancel_all()
