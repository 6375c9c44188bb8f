"""The webhook routes (DESIGN.md, "Webhooks") over real HTTP, PostgreSQL and Redis, and the URL rules
that keep the bridge from calling inside its own network. Delivery itself: test_webhooks_delivery.py."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import pytest_asyncio

from actors.webhook_sender import Sender
from api.app import create_app
from kernel import webhook_urls
from kernel.webhooks import DueDelivery
from tests.apikit import ServerThread, Stack, make_settings, new_user
from tests.webhookkit import Log, add_session, add_webhook, config, deliveries, dispatching, receiver

pytestmark = [pytest.mark.timeout(60)]


@pytest.fixture
def stack(database_url: str, redis_url: str) -> Iterator[Stack]:
    api_key = secrets.token_urlsafe(24)
    app = create_app(make_settings(database_url, redis_url, "webhooks-api", api_key))
    with ServerThread(app) as server:
        base = f"http://127.0.0.1:{server.port}"
        yield Stack(base, "", app.state.api.settings, "webhooks-api", api_key)


@pytest.fixture
def open_stack(database_url: str, redis_url: str) -> Iterator[Stack]:
    api_key = secrets.token_urlsafe(24)
    settings = make_settings(
        database_url, redis_url, "webhooks-api", api_key, webhook_allow_private_urls=True
    )
    app = create_app(settings)
    with ServerThread(app) as server:
        yield Stack(f"http://127.0.0.1:{server.port}", "", app.state.api.settings, "webhooks-api", api_key)


@pytest_asyncio.fixture
async def fake_dns(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[dict[str, list[str]]]:
    """Names this test's event loop resolves, and to what (the answer can change between lookups)."""
    answers: dict[str, list[str]] = {}
    loop = asyncio.get_running_loop()
    real = loop.getaddrinfo

    async def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host in answers:
            return [(2, 1, 6, "", (a, port)) for a in answers[host]]
        return await real(host, port, *args, **kwargs)

    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)
    yield answers


async def test_create_list_delete_and_the_secret_shown_once(stack: Stack, database_url: str) -> None:
    user = new_user()
    sid = await add_session(database_url, user)
    async with stack.client(user) as client:
        created = await client.post(
            "/webhooks", json={"url": "https://1.1.1.1/hook", "events": ["message"], "sessionId": sid}
        )
        assert created.status_code == 201, created.text
        body = created.json()
        assert set(body) == {"id", "url", "events", "sessionId", "secret", "createdAt"}
        assert (
            body["secret"].startswith("whsec_") and body["events"] == ["message"] and body["sessionId"] == sid
        )
        everything = (await client.post("/webhooks", json={"url": "https://1.1.1.1/all"})).json()
        assert everything["events"] is None and everything["sessionId"] is None

        listed = (await client.get("/webhooks")).json()
        assert [h["id"] for h in listed] == [body["id"], everything["id"]]
        assert all("secret" not in h for h in listed)
        assert body["secret"] not in (await client.get("/webhooks")).text

        page = await client.get(f"/webhooks/{body['id']}/deliveries")
        assert page.status_code == 200 and page.json() == {"items": [], "nextCursor": None}

        assert (await client.delete(f"/webhooks/{body['id']}")).status_code == 204
        assert (await client.delete(f"/webhooks/{body['id']}")).status_code == 404
        assert [h["id"] for h in (await client.get("/webhooks")).json()] == [everything["id"]]

    # Another user sees none of it, and gets for its id exactly what a missing id gets.
    missing = "00000000-0000-4000-8000-000000000000"
    async with stack.client(new_user()) as other:
        assert (await other.get("/webhooks")).json() == []
        for method, rest in (("GET", "/deliveries"), ("DELETE", "")):
            theirs = await other.request(method, f"/webhooks/{everything['id']}{rest}")
            absent = await other.request(method, f"/webhooks/{missing}{rest}")
            assert theirs.status_code == absent.status_code == 404
            assert theirs.json()["error"] == absent.json()["error"]
            assert theirs.json()["error"]["code"] == "webhook_not_found"
        foreign = await other.post("/webhooks", json={"url": "https://1.1.1.1/x", "sessionId": sid})
        assert foreign.status_code == 404 and foreign.json()["error"]["code"] == "session_not_found"
    async with stack.client(user) as client:
        assert [h["id"] for h in (await client.get("/webhooks")).json()] == [everything["id"]]


async def test_bad_input_is_a_clear_error(stack: Stack) -> None:
    async with stack.client(new_user()) as client:
        bad_type = await client.post("/webhooks", json={"url": "https://1.1.1.1/", "events": ["nope"]})
        assert bad_type.status_code == 422
        assert (await client.post("/webhooks", json={})).status_code == 422
        assert (await client.get("/webhooks/not-a-uuid/deliveries")).status_code == 404
        assert (await client.get("/webhooks/x/deliveries", params={"limit": 0})).status_code == 422
    async with stack.client() as anonymous:
        assert (await anonymous.get("/webhooks")).status_code == 400  # no X-User-Id


REFUSED = [
    "http://1.1.1.1/hook",  # not https
    "ftp://1.1.1.1/hook",
    "https://127.0.0.1/hook",
    "https://localhost/hook",
    "https://10.1.2.3/hook",
    "https://192.168.0.10/hook",
    "https://169.254.169.254/latest/meta-data/",  # cloud metadata (link-local)
    "https://[::1]/hook",
    "https://[fd00:ec2::254]/hook",
    "https://[::ffff:127.0.0.1]/hook",
    "https://100.64.0.1/hook",  # carrier-grade NAT
    "https://0.0.0.0/hook",
    "https://user:pw@1.1.1.1/hook",
    "https://no-such-host.invalid/hook",
    "https://" + "a" * 70 + ".example.com/",  # a label IDNA refuses: no 500
    "https://a..b/hook",
]


async def test_urls_inside_the_network_are_refused(stack: Stack) -> None:
    async with stack.client(new_user()) as client:
        for url in REFUSED:
            refused = await client.post("/webhooks", json={"url": url})
            assert refused.status_code == 400, (url, refused.text)
            assert refused.json()["error"]["code"] == "webhook_url_not_allowed"
        assert (await client.get("/webhooks")).json() == []


async def test_a_name_resolving_inside_is_refused(stack: Stack, fake_dns: dict[str, list[str]]) -> None:
    # The server runs in another thread's loop: check the rule the route applies, in this loop.
    fake_dns["inside.example.test"] = ["10.0.0.7"]
    fake_dns["mixed.example.test"] = ["1.1.1.1", "192.168.1.1"]
    fake_dns["outside.example.test"] = ["1.1.1.1"]
    for host in ("inside", "mixed"):
        with pytest.raises(webhook_urls.UrlNotAllowed):
            await webhook_urls.check(f"https://{host}.example.test/", allow_private=False)
    target = await webhook_urls.check("https://outside.example.test:8443/h?x=1", allow_private=False)
    assert (target.host, target.port, target.path) == ("outside.example.test", 8443, "/h?x=1")


async def test_private_urls_are_allowed_when_configured(open_stack: Stack) -> None:
    async with open_stack.client(new_user()) as client:
        created = await client.post("/webhooks", json={"url": "http://127.0.0.1:9/hook"})
    assert created.status_code == 201, created.text


def _due(url: str, secret: str = "whsec_" + "A" * 43) -> DueDelivery:
    now = datetime.now(UTC)
    return DueDelivery("w", "1-0", "s", url, secret, '{"type":"status"}', 0, now, now)


async def test_a_dns_answer_that_changes_to_inside_is_refused_at_delivery(
    fake_dns: dict[str, list[str]],
) -> None:
    async with receiver() as got:
        host = "rebinding.example.test"
        fake_dns[host] = ["93.184.216.34"]  # what the name resolved to when the webhook was created
        await webhook_urls.check(f"https://{host}:{got.port}/hook", allow_private=False)
        fake_dns[host] = ["127.0.0.1"]  # ... and what it answers now
        sender = Sender(allow_private=False, timeout_s=2)
        attempt = await sender.send(_due(f"https://{host}:{got.port}/hook"))
        await sender.close()
    assert not attempt.ok and attempt.status is None
    assert (attempt.error or "").startswith("address_not_allowed")
    assert got.requests == []


async def test_the_connection_goes_to_the_address_resolved_once(fake_dns: dict[str, list[str]]) -> None:
    async with receiver() as got:
        fake_dns["pinned.example.test"] = ["127.0.0.1"]
        sender = Sender(allow_private=True, timeout_s=2)
        attempt = await sender.send(_due(f"http://pinned.example.test:{got.port}/hook?x=1"))
        await sender.close()
    assert attempt.ok and attempt.status == 200
    assert got.requests[0].headers["Host"] == f"pinned.example.test:{got.port}"


async def test_a_redirect_is_not_followed(database_url: str, redis_url: str) -> None:
    log = Log(redis_url)
    sid = await add_session(database_url, "ann")
    async with receiver() as inside:

        async def redirect(_: int, __: dict[str, Any]) -> tuple[int, dict[str, str]]:
            return 307, {"Location": inside.url}

        async with receiver(redirect) as outside:
            wid, _ = await add_webhook(database_url, "ann", outside.url)
            async with dispatching(config(database_url, redis_url, backoff_max_s=0.2)):
                await log.message(sid, "hello")
                await outside.wait_for(lambda f: len(f) >= 2)
                await asyncio.sleep(0.3)
        rows = await deliveries(database_url, wid)
    assert inside.requests == []
    assert rows[0]["state"] == "pending" and rows[0]["last_status"] == 307
    await log.aclose()


def _metric(text: str, name: str) -> float:
    line = next(x for x in text.splitlines() if x.startswith(name + " ") or x.startswith(name + "{"))
    return float(line.rsplit(" ", 1)[1])


async def test_metrics_show_delivered_retried_failed_and_the_oldest_pending(
    stack: Stack, database_url: str, redis_url: str
) -> None:
    log = Log(redis_url)
    sid = await add_session(database_url, "ann")

    async def refuse(_: int, __: dict[str, Any]) -> tuple[int, dict[str, str]]:
        return 500, {}

    async with receiver() as good, receiver(refuse) as bad:
        await add_webhook(database_url, "ann", good.url)
        bad_id, _ = await add_webhook(database_url, "ann", bad.url)
        async with dispatching(config(database_url, redis_url, backoff_max_s=0.2)):
            await log.message(sid, "one")
            await log.message(sid, "two")
            await good.wait_for(lambda f: len(f) >= 2)
            await bad.wait_for(lambda f: len(f) >= 3)
            await asyncio.sleep(0.3)
    async with stack.client() as client:  # the figures are refreshed in the background (METRICS_REFRESH_S)
        deadline = asyncio.get_running_loop().time() + 10
        while True:
            text = (await client.get("/metrics")).text
            counts = [
                _metric(text, f'wab_webhook_deliveries{{state="{state}"}}')
                for state in ("delivered", "pending")
            ]
            if counts == [2, 2]:
                break
            assert asyncio.get_running_loop().time() < deadline, text[-600:]
            await asyncio.sleep(0.2)
    assert _metric(text, 'wab_webhook_deliveries{state="delivered"}') == 2
    assert _metric(text, 'wab_webhook_deliveries{state="pending"}') == 2
    assert _metric(text, 'wab_webhook_deliveries{state="failed"}') == 0
    assert _metric(text, "wab_webhook_retries") >= 2
    assert _metric(text, "wab_webhook_oldest_pending_seconds") > 0
    assert [r["state"] for r in await deliveries(database_url, bad_id)] == ["pending", "pending"]
    await log.aclose()
