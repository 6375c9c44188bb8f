"""A WebSocket resume against a real Redis: only its user's events after the cursor, in order, read from
the user's own index streams a page at a time, and a storm of resumes taking turns (`api.hub_replay`).

The entries are logged as the session processes log them (`kernel.event_index.APPEND`, through
`api.eventlog.append`); end-to-end resumes through real sessions and sockets are in test_event_log.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from api import eventlog
from api.hub_announce import OWNER_FIELD, SESSION_DELETED
from api.hub_replay import Replays
from api.metrics import Metrics
from api.subscribers import Subscriber
from kernel.event_index import session_index, user_index
from kernel.wire import EVENTS_STREAM, event_fields

A1, A2, B1 = "aaaaaaaa-0000-4000-8000-000000000001", "aaaaaaaa-0000-4000-8000-000000000002", "bbbb-1"


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def _log(redis: Redis, sid: str, n: int, *, kind: str = "msg", seq: int | None = None) -> str:
    body = json.dumps({"chatId": "c", "message": {"n": n}})
    return await eventlog.append(redis, session_index(sid), event_fields(sid, kind, body, sid, seq or n))


def _replays(redis: Redis, metrics: Metrics, **kw: Any) -> Replays:
    return Replays(lambda: redis, lambda _: False, metrics, **kw)


async def _all(replays: Replays, sub: Subscriber, cursor: str, sessions: list[str]) -> list[dict[str, Any]]:
    return [json.loads(f) async for f in replays.frames(sub, cursor, sessions)]


def _read(metrics: Metrics) -> float:
    return metrics.ws_resume_entries._value.get()


async def test_a_resume_reads_and_returns_only_its_users_events_after_the_cursor_in_order(
    redis: Redis,
) -> None:
    ids: dict[str, list[str]] = {A1: [], A2: [], B1: []}
    for n in range(1, 121):  # interleaved: user B logs four entries for every one of user A's sessions
        sid = A1 if n % 6 == 0 else A2 if n % 6 == 1 else B1
        ids[sid].append(await _log(redis, sid, n))
    # The API's own announcement for user A (session A2 deleted), and one for user B.
    for seq, (user, sid) in enumerate((("user-a", A2), ("user-b", B1)), 1):
        fields = event_fields(sid, SESSION_DELETED, json.dumps({OWNER_FIELD: user}), "api-x", seq)
        ids.setdefault(user, []).append(await eventlog.append(redis, user_index(user), fields))
    start = await eventlog.last_id(redis)
    cursor = ids[A1][4]  # user A's fifth entry
    metrics = Metrics()
    sub = Subscriber("user-a", None, start)

    frames = await _all(_replays(redis, metrics, page=7), sub, cursor, [A1, A2])

    mine = sorted(
        [i for i in ids[A1] + ids[A2] if eventlog.after(i, cursor)] + ids["user-a"],
        key=lambda i: eventlog.parse_cursor(i) or (0, 0),
    )
    assert [f["cursor"] for f in frames] == mine
    assert {f["sessionId"] for f in frames} == {A1, A2}
    assert frames[-1] == {"type": "session_deleted", "sessionId": A2, "cursor": ids["user-a"][0]}
    assert all(f["message"]["n"] % 6 in (0, 1) for f in frames[:-1])
    # What was read from Redis is exactly what was sent: not one entry of user B's, nor before the cursor.
    assert _read(metrics) == len(mine)
    assert await redis.xlen(EVENTS_STREAM) == 122

    # A socket watching one session gets that session's only; a cursor at the end gets nothing.
    one = Subscriber("user-a", A1, start)
    assert [f["cursor"] for f in await _all(_replays(redis, metrics), one, cursor, [A1, A2])] == [
        i for i in ids[A1] if eventlog.after(i, cursor)
    ]
    assert await _all(_replays(redis, metrics), Subscriber("user-a", None, start), start, [A1, A2]) == []


async def test_the_window_is_read_a_page_at_a_time_as_the_socket_takes_frames(redis: Redis) -> None:
    first = await _log(redis, A1, 1)
    for n in range(2, 1002):
        await _log(redis, A1, n)
    metrics = Metrics()
    frames = _replays(redis, metrics, page=50).frames(
        Subscriber("user-a", None, await eventlog.last_id(redis)), first, [A1]
    )
    got = [json.loads(await anext(frames)) for _ in range(60)]
    assert [f["message"]["n"] for f in got] == list(range(2, 62))
    assert _read(metrics) == 100, "two pages read for 60 frames, not the 1,000 of the window"
    await frames.aclose()


async def test_a_storm_of_resumes_takes_turns_per_user_and_in_all(redis: Redis) -> None:
    first = await _log(redis, A1, 1)
    for n in range(2, 12):
        await _log(redis, A1, n)
        await _log(redis, B1, n)
    start = await eventlog.last_id(redis)
    metrics = Metrics()
    replays = _replays(redis, metrics, per_user=2, resumes=3, reads=1)
    a_socks = [replays.frames(Subscriber("user-a", None, start), first, [A1]) for _ in range(5)]
    b_socks = [replays.frames(Subscriber("user-b", None, start), "0-0", [B1]) for _ in range(2)]
    pulls = {sock: asyncio.create_task(anext(sock)) for sock in [*a_socks, *b_socks]}
    await asyncio.sleep(0.5)
    running = [sock for sock, pull in pulls.items() if pull.done()]
    # Two of user A's resumes at a time, three in all: one of user B's got the third turn.
    assert sum(sock in a_socks for sock in running) == 2 and sum(sock in b_socks for sock in running) == 1
    assert metrics.ws_resumes_waiting._value.get() == 4
    for sock in running:  # those sockets finish (or leave): the others get their turns, in order
        await sock.aclose()
    await asyncio.sleep(0.5)
    assert sum(pull.done() for pull in pulls.values()) == 6
    for sock, pull in pulls.items():
        if not pull.done():
            pull.cancel()
        await asyncio.gather(pull, return_exceptions=True)
        await sock.aclose()
    # Every resume, each in turn, got all of its user's entries.
    for sub, cursor, sid in (
        (Subscriber("user-a", None, start), first, A1),
        (Subscriber("user-b", None, start), "0-0", B1),
    ):
        assert [f["message"]["n"] for f in await _all(replays, sub, cursor, [sid])] == list(range(2, 12))
    assert metrics.ws_resumes_waiting._value.get() == 0


async def test_cursors_the_index_cannot_answer_get_resync(redis: Redis) -> None:
    # Logged before the index existed (an older version's sessions): entries no index stream holds.
    fields = event_fields(A1, "msg", '{"chatId":"c","message":{}}', "old", 1)
    unindexed = await redis.xadd(EVENTS_STREAM, dict(zip(fields[::2], fields[1::2], strict=True)))
    await _log(redis, A1, 2)
    start = await eventlog.last_id(redis)
    metrics = Metrics()
    for cursor, live_from, reason in (
        (unindexed.decode(), start, "cursor_expired"),
        ("0-0", start, "cursor_expired"),
        ("not-a-cursor", start, "invalid_cursor"),
        (start, "0-0", "unavailable"),  # the socket went live before this process read the log
    ):
        frames = await _all(_replays(redis, metrics), Subscriber("user-a", None, live_from), cursor, [A1])
        assert [(f["type"], f["reason"]) for f in frames] == [("resync", reason)], cursor
    assert _read(metrics) == 0


async def test_a_copy_a_session_re_sent_is_replayed_once(redis: Redis) -> None:
    first = await _log(redis, A1, 1)
    await _log(redis, A1, 2, seq=2)
    await _log(redis, A1, 2, seq=2)  # the re-sent copy: same producer and seq
    await _log(redis, A1, 3, seq=3)
    frames = await _all(
        _replays(redis, Metrics()), Subscriber("user-a", None, await eventlog.last_id(redis)), first, [A1]
    )
    assert [f["message"]["n"] for f in frames] == [2, 3]
