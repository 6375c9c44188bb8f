"""Webhooks through the whole bridge: a simulated WhatsApp session, the API, and the dispatcher as the
registry creates and supervises it on a local Ray. What a receiver gets is the WebSocket's frame, signed;
the dispatcher (and the API) stopped while events are pending loses none of them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import ray
from standardwebhooks.webhooks import Webhook

from actors.registry import REGISTRY_NAME
from actors.webhook_actor import dispatcher_name, ensure_dispatcher
from api.app import create_app
from tests.apikit import ServerThread, Stack, api_stack, new_user, websocket
from tests.consolekit import new_phone
from tests.raykit import eventually, kill_namespace_actors, local_ray
from tests.webhookkit import config, receiver

pytestmark = [pytest.mark.ray, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def stack(postgres_server: str, redis_server: str) -> Iterator[Stack]:
    webhooks = config(postgres_server, redis_server, backoff_max_s=0.5, poll_s=0.2)
    with (
        local_ray(),
        api_stack(
            postgres_server, redis_server, registry={"webhooks": webhooks}, webhook_allow_private_urls=True
        ) as running,
    ):
        try:
            yield running
        finally:
            # The registry first: it would create the dispatcher again.
            ray.kill(ray.get_actor(REGISTRY_NAME, namespace=running.namespace), no_restart=True)
            kill_namespace_actors(running.namespace)


async def paired_session(client: httpx.AsyncClient) -> str:
    sid: str = (await client.post("/sessions", json={})).json()["id"]

    async def status() -> dict[str, Any]:
        found: dict[str, Any] = (await client.get(f"/sessions/{sid}/status")).json()
        return found

    await eventually(status, lambda s: s["status"] == "qr_ready", timeout=60)
    scanned = await client.post(f"/simulator/sessions/{sid}/scan", json={"phone": new_phone()})
    assert scanned.status_code == 200, scanned.text
    await eventually(status, lambda s: s["status"] == "connected", timeout=30)
    return sid


async def incoming(client: httpx.AsyncClient, sid: str, text: str) -> None:
    sent = await client.post(
        f"/simulator/sessions/{sid}/incoming", json={"from": "+15550001234", "text": text}
    )
    assert sent.status_code == 200, sent.text


def texts(frames: list[dict[str, Any]]) -> list[str]:
    return [f["message"]["text"] for f in frames if f["type"] == "message"]


async def test_a_receiver_gets_the_websocket_frame_signed(stack: Stack) -> None:
    user = new_user()
    async with stack.client(user) as client, receiver() as got:
        sid = await paired_session(client)
        created = await client.post("/webhooks", json={"url": got.url, "events": ["message"]})
        assert created.status_code == 201, created.text
        hook = created.json()
        async with websocket(stack, user, session_id=sid) as ws:
            await incoming(client, sid, "hello hook")
            frame = await ws.wait_for(
                lambda f: f["type"] == "message" and f["message"]["text"] == "hello hook"
            )
            await got.wait_for(lambda f: texts(f) == ["hello hook"], timeout=20)
        request = got.requests[0]
        assert Webhook(hook["secret"]).verify(request.body, request.headers) == frame
        assert request.headers["webhook-id"] == frame["cursor"]

        async def page() -> dict[str, Any]:
            found: dict[str, Any] = (await client.get(f"/webhooks/{hook['id']}/deliveries")).json()
            return found

        done = await eventually(page, lambda p: p["items"] and p["items"][0]["state"] == "delivered")
        assert done["items"][0] == {
            "eventId": frame["cursor"],
            "type": "message",
            "state": "delivered",
            "attempts": 1,
            "lastStatus": 200,
            "lastError": None,
            "nextAttemptAt": None,
        }


async def test_events_pending_while_the_dispatcher_and_the_api_are_down_are_all_delivered(
    stack: Stack,
) -> None:
    user = new_user()
    async with stack.client(user) as client, receiver() as got:
        sid = await paired_session(client)
        hook = (await client.post("/webhooks", json={"url": got.url, "events": ["message"]})).json()
        await got.down()
        for i in range(3):
            await incoming(client, sid, f"m{i}")

        async def attempts() -> int:
            page = (await client.get(f"/webhooks/{hook['id']}/deliveries")).json()
            return sum(item["attempts"] for item in page["items"])

        await eventually(attempts, lambda n: n >= 2, timeout=20)  # refused, retried
        ray.kill(ray.get_actor(dispatcher_name(0), namespace=stack.namespace), no_restart=True)
        for i in range(3, 6):  # while no dispatcher runs
            await incoming(client, sid, f"m{i}")
        await asyncio.sleep(0.5)
        await got.up()
        # The registry creates it again; it resumes from PostgreSQL.
        await got.wait_for(lambda f: len(set(texts(f))) >= 6, timeout=60)
    assert list(dict.fromkeys(texts(got.frames()))) == [f"m{i}" for i in range(6)]

    # A new API process (the first one's state played no part) reads the same deliveries.
    with ServerThread(create_app(stack.settings)) as other:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{other.port}", headers=stack.headers(user)
        ) as fresh:

            async def page() -> list[dict[str, Any]]:
                found: list[dict[str, Any]] = (await fresh.get(f"/webhooks/{hook['id']}/deliveries")).json()[
                    "items"
                ]
                return found

            items = await eventually(
                page, lambda p: len(p) == 6 and all(i["state"] == "delivered" for i in p)
            )
    assert [i["attempts"] >= 1 for i in items] == [True] * 6


async def test_a_dispatcher_beyond_the_configured_count_is_stopped(
    stack: Stack, postgres_server: str
) -> None:
    # Left by a run configured with two: it would share sessions with dispatcher 0, breaking their order.
    extra = ensure_dispatcher(
        config(postgres_server, stack.settings.redis_url or "", dispatchers=2), stack.namespace, 1
    )

    async def killed() -> str:
        try:
            await extra.ping.remote()
        except ray.exceptions.RayActorError as err:
            return str(err)
        return "alive"

    why = await eventually(killed, lambda w: w != "alive", timeout=20)
    assert "ray.kill" in why
    names = [
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["namespace"] == stack.namespace
    ]
    assert dispatcher_name(0) in names and dispatcher_name(1) not in names
