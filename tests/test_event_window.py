"""The event window is a setting (EVENT_STREAM_RETAINED) that reaches the sessions: with a small one the
`wa:events` stream really stays that small, a cursor inside it still resumes, and one older than it gets
the documented `resync` frame.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import ValidationError
from redis.asyncio import Redis

from api.localstack import EmbeddedValkey
from api.wiring import registry_config
from kernel.settings import Settings
from kernel.wire import EVENTS_RETAINED, EVENTS_STREAM
from tests.apikit import Stack, api_stack, new_user, websocket
from tests.raykit import local_ray

WINDOW = 20
# XADD MAXLEN ~ trims whole stream nodes: Redis's stream-node-max-entries, 100 by default.
NODE_ENTRIES = 100
MESSAGES = 200  # well past the window and one node


def test_the_window_is_a_validated_setting_carried_to_the_sessions(monkeypatch: pytest.MonkeyPatch) -> None:
    urls = {"database_url": "postgresql://u:p@db:5432/bridge", "redis_url": "redis://cache:6379/0"}
    assert Settings(_env_file=None, **urls).event_stream_retained == EVENTS_RETAINED == 100_000
    monkeypatch.setenv("EVENT_STREAM_RETAINED", "500")
    assert registry_config(Settings(_env_file=None, **urls)).session.events_retained == 500
    for bad in ("0", "-5", "lots"):
        monkeypatch.setenv("EVENT_STREAM_RETAINED", bad)
        with pytest.raises(ValidationError, match="event_stream_retained"):
            Settings(_env_file=None, **urls)


@pytest.fixture(scope="module")
def valkey(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedValkey]:
    """A Redis of this module's own: the stream's length is only what these sessions wrote."""
    with EmbeddedValkey(tmp_path_factory.mktemp("valkey")) as server:
        yield server


@pytest.fixture(scope="module")
def stack(postgres_server: str, valkey: EmbeddedValkey) -> Iterator[Stack]:
    with local_ray(), api_stack(postgres_server, valkey.url, session={"events_retained": WINDOW}) as running:
        yield running


async def _connected_session(stack: Stack, user: str) -> str:
    async with stack.client(user) as client, websocket(stack, user) as ws:
        sid = str((await client.post("/sessions", json={})).json()["id"])
        await ws.wait_for(lambda f: f["type"] == "qr" and f["sessionId"] == sid)
        scanned = await client.post(f"/simulator/sessions/{sid}/scan", json={"phone": "+14155550301"})
        assert scanned.status_code == 200, scanned.text
        await ws.wait_for(lambda f: f["type"] == "status" and f["status"] == "connected")
    return sid


@pytest.mark.ray
@pytest.mark.timeout(240)
async def test_a_small_window_caps_the_stream_and_an_older_cursor_gets_resync(
    stack: Stack, valkey: EmbeddedValkey
) -> None:
    user = new_user()
    sid = await _connected_session(stack, user)
    texts = [f"m{n}" for n in range(MESSAGES)]
    async with stack.client() as client, websocket(stack, user) as ws:
        for text in texts:
            sent = await client.post(
                f"/simulator/sessions/{sid}/incoming", json={"from": "+15550004444", "text": text}
            )
            assert sent.status_code == 200, sent.text
        await ws.wait_for(lambda f: f["type"] == "message" and f["message"]["text"] == texts[-1], timeout=60)
    cursors = {f["message"]["text"]: f["cursor"] for f in ws.of("message")}
    assert list(cursors) == texts

    async with Redis.from_url(valkey.url) as redis:
        info = await redis.xinfo_stream(EVENTS_STREAM)
    added, length = int(info["entries-added"]), int(info["length"])
    assert added >= MESSAGES
    assert WINDOW <= length <= WINDOW + NODE_ENTRIES, (added, length)

    # A cursor from before the window: one resync frame, nothing replayed past the gap.
    async with websocket(stack, user, cursor=cursors[texts[0]]) as old:
        resync = await old.wait_for(lambda f: f["type"] == "resync")
        assert resync["reason"] == "cursor_expired" and resync["cursor"]
        assert not old.of("message")

    # A cursor inside the window: exactly the frames missed after it, in order.
    async with websocket(stack, user, cursor=cursors[texts[-4]]) as recent:
        await recent.wait_for(lambda f: f["type"] == "message" and f["message"]["text"] == texts[-1])
        assert [f["message"]["text"] for f in recent.of("message")] == texts[-3:]
        assert not recent.of("resync")
