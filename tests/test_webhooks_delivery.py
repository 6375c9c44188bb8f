"""Webhook delivery against real HTTP receivers on this machine, real PostgreSQL and Redis: one
dispatcher (`actors.webhook_dispatcher`) runs in the test's event loop, fed by the event log as the
sessions write it. The Ray side (the registry keeping dispatchers alive) is tests/test_webhooks_cluster.py.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest
from standardwebhooks.webhooks import Webhook

from persistence.stores import PostgresStores
from tests.faultproxy import FaultProxy
from tests.webhookkit import (
    Log,
    Receiver,
    add_session,
    add_webhook,
    config,
    deliveries,
    dispatching,
    receiver,
)

pytestmark = [pytest.mark.timeout(60)]

REFUSING_S = 60.0  # how long the receiver of the refusing test stays down (issue 22: 60 s)


def in_order_once(frames: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Each session's texts in the order received; asserts no event arrived twice."""
    cursors = [f["cursor"] for f in frames]
    assert len(cursors) == len(set(cursors)), "an event was delivered twice"
    texts: defaultdict[str, list[str]] = defaultdict(list)
    for frame in frames:
        texts[frame["sessionId"]].append(frame["message"]["text"])
    return dict(texts)


async def test_events_arrive_signed_in_order_once_and_filtered_by_type(
    database_url: str, redis_url: str
) -> None:
    log = Log(redis_url)
    a, b = await add_session(database_url, "ann"), await add_session(database_url, "ann", slot=2)
    other = await add_session(database_url, "bob")
    async with receiver() as everything, receiver() as messages_only:
        all_id, all_secret = await add_webhook(database_url, "ann", everything.url)
        msg_id, msg_secret = await add_webhook(database_url, "ann", messages_only.url, events=["message"])
        async with dispatching(config(database_url, redis_url)):
            for i in range(10):
                await log.message(a, f"a{i}")
                await log.emit(b, "status", status="connected", reason=None)
                await log.message(b, f"b{i}")
                await log.message(other, f"not ann's {i}")
            await everything.wait_for(lambda f: len(f) >= 30)
            await messages_only.wait_for(lambda f: len(f) >= 20)
            await asyncio.sleep(0.5)  # nothing more comes

        # Signed as Standard Webhooks says: the package's own verification passes.
        for got, secret in ((everything, all_secret), (messages_only, msg_secret)):
            for request in got.requests:
                frame = Webhook(secret).verify(request.body, request.headers)
                assert request.headers["webhook-id"] == frame["cursor"]
                assert request.headers["Content-Type"] == "application/json"
        with pytest.raises(Exception, match="signature"):
            Webhook(msg_secret).verify(everything.requests[0].body, everything.requests[0].headers)

        assert len(everything.requests) == 30
        statuses = [f for f in everything.frames() if f["type"] == "status"]
        assert len(statuses) == 10 and all(f["sessionId"] == b for f in statuses)
        texts = in_order_once([f for f in everything.frames() if f["type"] == "message"])
        assert texts == {a: [f"a{i}" for i in range(10)], b: [f"b{i}" for i in range(10)]}
        assert {f["type"] for f in messages_only.frames()} == {"message"}
        assert in_order_once(messages_only.frames()) == texts
        # The body is the WebSocket frame: type, sessionId, the payload, cursor.
        first = next(f for f in everything.frames() if f["type"] == "message")
        assert list(first) == ["type", "sessionId", "chatId", "message", "cursor"]
    states = await deliveries(database_url, all_id) + await deliveries(database_url, msg_id)
    assert {(d["state"], d["attempts"], d["last_status"]) for d in states} == {("delivered", 1, 200)}
    await log.aclose()


async def test_5xx_is_retried_with_the_same_id_until_a_2xx_in_order(
    database_url: str, redis_url: str
) -> None:
    log = Log(redis_url)
    sid = await add_session(database_url, "ann")
    tries: defaultdict[str, int] = defaultdict(int)

    async def flaky(_: int, frame: dict[str, Any]) -> tuple[int, dict[str, str]]:
        tries[frame["cursor"]] += 1
        return (500 if tries[frame["cursor"]] <= 2 else 204), {}

    async with receiver(flaky) as got:
        wid, _ = await add_webhook(database_url, "ann", got.url)
        async with dispatching(config(database_url, redis_url, backoff_max_s=0.1)):
            for i in range(5):
                await log.message(sid, f"m{i}")
            await got.wait_for(lambda f: len(f) >= 15)
            await asyncio.sleep(0.5)
    assert len(got.requests) == 15  # three tries each, none after its 2xx
    ids = [r.headers["webhook-id"] for r in got.requests]
    assert [i for n, i in enumerate(ids) if i not in ids[:n]] == sorted(set(ids), key=ids.index)
    # In order: event n+1 is first tried only once event n got its 2xx.
    firsts = [ids.index(i) for i in dict.fromkeys(ids)]
    lasts = [len(ids) - 1 - ids[::-1].index(i) for i in dict.fromkeys(ids)]
    assert all(lasts[n] < firsts[n + 1] for n in range(4))
    rows = await deliveries(database_url, wid)
    assert [(r["state"], r["attempts"], r["last_status"]) for r in rows] == [("delivered", 3, 204)] * 5
    await log.aclose()


@pytest.mark.timeout(150)
async def test_a_receiver_refusing_connections_gets_every_event_in_order_once_up(
    database_url: str, redis_url: str
) -> None:
    log = Log(redis_url)
    sid = await add_session(database_url, "ann")
    async with receiver() as got:
        wid, _ = await add_webhook(database_url, "ann", got.url)
        await got.down()
        async with dispatching(config(database_url, redis_url, backoff_max_s=1.0)):
            refused_since = time.monotonic()
            for i in range(20):
                await log.message(sid, f"m{i}")
                await asyncio.sleep(0.05)
            # Refused for a whole minute: retried all along, never given up.
            await asyncio.sleep(max(0.0, REFUSING_S - (time.monotonic() - refused_since)))
            rows = await deliveries(database_url, wid)
            assert rows[0]["state"] == "pending" and rows[0]["attempts"] >= 20
            assert "Connect" in (rows[0]["last_error"] or ""), rows[0]
            assert all(r["attempts"] == 0 for r in rows[1:])  # in order: the rest wait behind it
            await got.up()
            await got.wait_for(lambda f: len(f) >= 20, timeout=10)
        assert in_order_once(got.frames()) == {sid: [f"m{i}" for i in range(20)]}
    await log.aclose()


async def test_a_delivery_is_failed_after_its_retry_window_and_the_queue_moves_on(
    database_url: str, redis_url: str
) -> None:
    log = Log(redis_url)
    sid = await add_session(database_url, "ann")

    async def first_always_fails(_: int, frame: dict[str, Any]) -> tuple[int, dict[str, str]]:
        return (503 if frame["message"]["text"] == "doomed" else 200), {}

    async with receiver(first_always_fails) as got:
        wid, _ = await add_webhook(database_url, "ann", got.url)
        async with dispatching(config(database_url, redis_url, backoff_max_s=0.2, retry_for_s=1.5)):
            await log.message(sid, "doomed")
            await log.message(sid, "next")
            await got.wait_for(lambda f: any(x["message"]["text"] == "next" for x in f), timeout=10)
            await asyncio.sleep(0.5)  # its 2xx recorded
    rows = await deliveries(database_url, wid)
    assert [(r["state"], r["last_status"]) for r in rows] == [("failed", 503), ("delivered", 200)]
    assert rows[0]["attempts"] >= 3 and rows[0]["last_error"] == "nope"
    await log.aclose()


async def test_a_slow_receiver_does_not_hold_up_other_webhooks(database_url: str, redis_url: str) -> None:
    log = Log(redis_url)
    sid = await add_session(database_url, "ann")

    async def slow(_: int, __: dict[str, Any]) -> tuple[int, dict[str, str]]:
        await asyncio.sleep(5)
        return 200, {}

    async with receiver(slow) as stuck, receiver() as fast:
        await add_webhook(database_url, "ann", stuck.url)
        await add_webhook(database_url, "ann", fast.url)
        async with dispatching(config(database_url, redis_url, timeout_s=10.0)):
            started = time.monotonic()
            for i in range(20):
                await log.message(sid, f"m{i}")
            await fast.wait_for(lambda f: len(f) >= 20, timeout=5)
            assert time.monotonic() - started < 2.5
            assert len(stuck.requests) == 1  # still waiting on its first
    await log.aclose()


async def test_events_pending_across_a_dispatcher_restart_are_all_delivered(
    database_url: str, redis_url: str
) -> None:
    log = Log(redis_url)
    sid = await add_session(database_url, "ann")
    cfg = config(database_url, redis_url)
    async with receiver() as got:
        await add_webhook(database_url, "ann", got.url)
        async with dispatching(cfg):
            for i in range(5):
                await log.message(sid, f"m{i}")
            await got.wait_for(lambda f: len(f) >= 5)
            await got.down()
            for i in range(5, 10):
                await log.message(sid, f"m{i}")
            await asyncio.sleep(0.5)
        # Stopped (as a crash: no goodbye); events come while nothing reads the log.
        for i in range(10, 15):
            await log.message(sid, f"m{i}")
        await got.up()
        async with dispatching(cfg):
            await got.wait_for(lambda f: len(f) >= 15)
            await asyncio.sleep(0.3)
    assert in_order_once(got.frames()) == {sid: [f"m{i}" for i in range(15)]}
    await log.aclose()


@asynccontextmanager
async def _dispatching_through_a_proxy(
    database_url: str, redis_url: str, *, cut: str
) -> AsyncIterator[tuple[Log, str, FaultProxy, Receiver]]:
    """A webhook of Ann's on a live receiver, its dispatcher reaching `cut` ("redis" or "postgres")
    through a fault proxy; yields the event log, Ann's session id, the proxy and the receiver."""
    log = Log(redis_url)
    sid = await add_session(database_url, "ann")
    url, port = (redis_url, 6379) if cut == "redis" else (database_url, 5432)
    parts = urlsplit(url)
    with FaultProxy(parts.hostname or "127.0.0.1", parts.port or port) as proxy:
        if cut == "redis":
            cfg = config(database_url, proxy.url_for(redis_url))
        else:
            cfg = config(proxy.url_for(database_url), redis_url)
        async with receiver() as got:
            await add_webhook(database_url, "ann", got.url)
            async with dispatching(cfg):
                yield log, sid, proxy, got
                await asyncio.sleep(0.3)  # nothing more comes
    await log.aclose()


async def test_nothing_is_lost_while_redis_is_cut(database_url: str, redis_url: str) -> None:
    async with _dispatching_through_a_proxy(database_url, redis_url, cut="redis") as (log, sid, proxy, got):
        for i in range(5):
            await log.message(sid, f"m{i}")
        await got.wait_for(lambda f: len(f) >= 5)
        proxy.cut()
        for i in range(5, 15):  # the sessions still reach Redis; the dispatcher does not
            await log.message(sid, f"m{i}")
            await asyncio.sleep(0.1)
        assert len(got.requests) == 5
        proxy.restore()
        await got.wait_for(lambda f: len(f) >= 15, timeout=15)
    assert in_order_once(got.frames()) == {sid: [f"m{i}" for i in range(15)]}


async def test_nothing_is_lost_while_postgres_is_cut(database_url: str, redis_url: str) -> None:
    async with _dispatching_through_a_proxy(database_url, redis_url, cut="postgres") as (
        log,
        sid,
        proxy,
        got,
    ):
        for i in range(30):
            await log.message(sid, f"m{i}")
            if i == 10:
                proxy.cut()
            if i == 20:
                await asyncio.sleep(1.0)
                proxy.restore()
            await asyncio.sleep(0.05)
        await got.wait_for(lambda f: {x["message"]["text"] for x in f} >= {f"m{i}" for i in range(30)})
    # At least once: an event whose "delivered" could not be written may come again (same webhook-id),
    # but each first arrives in order and none is missing.
    first_seen = list(dict.fromkeys(f["message"]["text"] for f in got.frames()))
    assert first_seen == [f"m{i}" for i in range(30)]


async def test_retention_deletes_old_finished_deliveries_and_keeps_pending_ones(
    database_url: str, redis_url: str
) -> None:
    log = Log(redis_url)
    sid = await add_session(database_url, "ann")
    async with receiver() as got:
        wid, _ = await add_webhook(database_url, "ann", got.url)
        async with dispatching(config(database_url, redis_url)):
            for i in range(3):
                await log.message(sid, f"m{i}")
            await got.wait_for(lambda f: len(f) >= 3)
            await asyncio.sleep(0.3)
    conn = await asyncpg.connect(database_url)
    try:
        # One delivered long ago, one still pending from long ago (a receiver down for weeks).
        await conn.execute(
            "UPDATE webhook_delivery SET updated_at = now() - interval '8 days'"
            " WHERE event_id = (SELECT min(event_id) FROM webhook_delivery)"
        )
        await conn.execute(
            "UPDATE webhook_delivery SET state = 'pending', updated_at = now() - interval '30 days'"
            " WHERE event_id = (SELECT max(event_id) FROM webhook_delivery)"
        )
    finally:
        await conn.close()
    store = PostgresStores().webhooks(database_url)
    try:
        assert await store.purge(7) == 1
        assert await store.purge(7) == 0
    finally:
        await store.close()
    assert [r["state"] for r in await deliveries(database_url, wid)] == ["delivered", "pending"]
    await log.aclose()
