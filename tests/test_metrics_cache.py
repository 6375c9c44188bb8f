"""`/metrics` reads memory only (figures refreshed in the background) and can be protected by a token.

The app runs in-process (no Ray) against real PostgreSQL through a fault proxy and real Redis.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from pydantic import SecretStr

from api.app import create_app
from kernel.settings import Settings
from tests.faultproxy import FaultProxy

KEY = "metrics-test-admin-key"
REFRESH_S = 0.5


@pytest.fixture
def proxy(database_url: str) -> Iterator[FaultProxy]:
    url = urlsplit(database_url)
    with FaultProxy(url.hostname or "127.0.0.1", url.port or 5432) as running:
        try:
            yield running
        finally:
            running.restore()


@asynccontextmanager
async def _app(database_url: str, redis_url: str, **values: Any) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        _env_file=None,
        database_url=database_url,
        redis_url=redis_url,
        whatsapp_bridge_api_key=SecretStr(KEY),
        wa_backend="simulated",
        metrics_refresh_s=REFRESH_S,
        **values,
    )
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client,
    ):
        yield client


def _gauge(text: str, name: str, labels: str = "") -> float | None:
    found = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else None


async def _sessions_shown(client: httpx.AsyncClient, want: float, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        text = (await client.get("/metrics")).text
        if _gauge(text, "wab_sessions", '{status="disconnected"}') == want:
            return text
        assert time.monotonic() < deadline, text[-2000:]
        await asyncio.sleep(0.1)


async def test_a_scrape_reads_no_database_and_never_waits_for_one(
    database_url: str, redis_url: str, proxy: FaultProxy
) -> None:
    async with _app(proxy.url_for(database_url), redis_url) as client:
        headers = {"X-API-Key": KEY, "X-User-Id": "metrics-user"}
        for _ in range(2):
            created = await client.post("/sessions", json={}, headers=headers)
            assert created.status_code == 201, created.text
        before = await _sessions_shown(client, 2)
        refreshed = _gauge(before, "wab_metrics_refreshed_timestamp_seconds")
        assert refreshed is not None and time.time() - refreshed < 5

        # PostgreSQL stops answering (connections accepted, never served): a scrape that asked it would
        # wait for the query timeout (10 s). Many scrapes answer at once, with the last figures.
        proxy.stall()
        await asyncio.sleep(REFRESH_S * 2)  # a refresh pass is now stuck on the database
        accepted = proxy.accepted
        started = time.monotonic()
        for _ in range(50):
            scraped = await client.get("/metrics")
            assert scraped.status_code == 200
            assert _gauge(scraped.text, "wab_sessions", '{status="disconnected"}') == 2
        assert time.monotonic() - started < 2.0
        assert proxy.accepted == accepted, "a scrape opened a database connection"
        stale = _gauge(scraped.text, "wab_metrics_refreshed_timestamp_seconds")
        assert stale is not None and stale <= (refreshed or 0) + REFRESH_S * 4

        # Back: the figures follow the database again, without any scrape asking.
        proxy.restore()
        created = await client.post("/sessions", json={}, headers=headers)
        assert created.status_code == 201, created.text
        after = await _sessions_shown(client, 3, timeout=30)
        fresh = _gauge(after, "wab_metrics_refreshed_timestamp_seconds")
        assert fresh is not None and fresh > (stale or 0)


async def test_metrics_token_protects_the_scrape(database_url: str, redis_url: str) -> None:
    async with _app(database_url, redis_url, metrics_token=SecretStr("scrape-me")) as client:
        for headers in (
            {},
            {"Authorization": "Bearer scrape-m"},
            {"Authorization": "Basic scrape-me"},
            {"Authorization": "scrape-me"},
            {"X-API-Key": KEY},
        ):
            refused = await client.get("/metrics", headers=headers)
            assert refused.status_code == 401, headers
            assert refused.json()["error"]["code"] == "unauthorized"
            assert "scrape-me" not in refused.text
        allowed = await client.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
        assert allowed.status_code == 200 and "wab_http_requests" in allowed.text
        assert (await client.get("/health")).status_code == 200  # health stays open

    async with _app(database_url, redis_url) as client:  # unset: open, as before
        assert (await client.get("/metrics")).status_code == 200
