"""Reads never need a session's process: status, chats, messages (with their media's metadata) and a
cached picture answer 200 from PostgreSQL while the process is SIGKILLed and restarted, and
`Session.live` tells "connected as last stored" from "connected now". A WebSocket's snapshot is read from
the store too."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator

import pytest

from tests.apikit import Stack, api_stack, new_user, websocket
from tests.raykit import eventually, local_ray, pid_of
from tests.readkit import FAST_BEAT, connected_inbox, read_all, same_inbox, status

pytestmark = [pytest.mark.ray, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def stack(postgres_server: str, redis_server: str) -> Iterator[Stack]:
    with local_ray(), api_stack(postgres_server, redis_server, session=FAST_BEAT) as running:
        yield running


async def test_every_read_answers_the_same_while_the_process_is_killed_and_restarts(
    stack: Stack, postgres_server: str
) -> None:
    async with stack.client(new_user()) as client:
        inbox = await connected_inbox(client, postgres_server)
        before = await read_all(client, inbox)
        assert before.status["live"] is True and before.status["status"] == "connected"
        media = before.messages[inbox.with_media]["items"][0]["media"]
        assert (media["mimetype"], media["fileName"], media["size"]) == ("image/jpeg", "a.jpg", 4321)
        pid = await pid_of(inbox.sid, stack.namespace)

        os.kill(pid, signal.SIGKILL)
        lives: list[bool] = []
        rounds = 0
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            got = await read_all(client, inbox)  # every answer a 200, whatever the process is doing
            rounds += 1
            assert same_inbox(got, before), (got, before)
            assert got.status["status"] in ("connected", "connecting"), got.status
            lives.append(got.status["live"])
            if False in lives and lives[-1] and got.status["status"] == "connected":
                break

        assert False in lives, "never seen not live after the kill"
        assert lives[-1] is True, f"not live again within 90 s ({rounds} rounds)"
        assert await pid_of(inbox.sid, stack.namespace) != pid, "a new process"


async def test_the_documented_flow_restart_wait_for_connected_then_list_chats(
    stack: Stack, postgres_server: str
) -> None:
    """A client that waits for `connected` after a restart and then reads never gets a 503."""
    async with stack.client(new_user()) as client:
        inbox = await connected_inbox(client, postgres_server)
        before = await client.get(f"/sessions/{inbox.sid}/chats")
        pid = await pid_of(inbox.sid, stack.namespace)

        os.kill(pid, signal.SIGKILL)  # the restart
        await eventually(
            lambda: status(client, inbox.sid), lambda s: s["status"] == "connected", 30, every=0.05
        )
        chats = await client.get(f"/sessions/{inbox.sid}/chats")

        assert chats.status_code == 200, chats.text
        assert chats.json() == before.json()
        # And `live` tells when the restarted process holds the connection again.
        await eventually(
            lambda: status(client, inbox.sid), lambda s: s["live"] and s["status"] == "connected", 60
        )


async def test_a_websocket_gets_its_snapshot_at_once_while_the_process_is_killed_and_restarts(
    stack: Stack, postgres_server: str
) -> None:
    """Asking the restarting process would hold the snapshot until it answers (or 2 s); the store answers."""
    user = new_user()
    async with stack.client(user) as client:
        inbox = await connected_inbox(client, postgres_server)
        pid = await pid_of(inbox.sid, stack.namespace)

        os.kill(pid, signal.SIGKILL)
        # Restarting until its successor answers (a new pid); snapshots are opened all along.
        back = asyncio.create_task(
            eventually(lambda: pid_of(inbox.sid, stack.namespace), lambda p: p != pid, timeout=90)
        )
        waits: list[float] = []
        not_live = 0
        try:
            while True:
                restarting = not back.done()
                opened = time.monotonic()
                async with websocket(stack, user) as ws:
                    first = await ws.wait_for(lambda f: f["type"] == "status", timeout=10)
                waits.append(time.monotonic() - opened)
                assert first["sessionId"] == inbox.sid and first["phone"] == inbox.phone, first
                assert first["status"] in ("connected", "connecting"), first
                not_live += restarting
                if back.done():
                    break
        finally:
            if not back.done():
                back.cancel()
        await back
        assert not_live >= 1, "no snapshot taken while the process was down"
        await eventually(lambda: status(client, inbox.sid), lambda s: s["live"], timeout=30)
        assert max(waits) < 1.5, (not_live, waits)
