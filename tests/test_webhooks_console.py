"""The console's Webhooks card (Settings), in Chromium against a real API (PostgreSQL, Redis) with a real
receiver and a dispatcher in the test's loop: add one (its secret shown once), see its last deliveries
and failures, a refused URL explained, delete it."""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, expect

from api.app import create_app
from tests.apikit import ServerThread, Stack, make_settings, new_user
from tests.consolekit import console_page, low_contrast, unnamed_controls
from tests.webhookkit import Log, add_session, config, dispatching, receiver

pytestmark = [pytest.mark.timeout(90)]


@pytest.fixture
def stack(database_url: str, redis_url: str) -> Iterator[Stack]:
    api_key = secrets.token_urlsafe(24)
    settings = make_settings(
        database_url, redis_url, "webhooks-console", api_key, webhook_allow_private_urls=True
    )
    app = create_app(settings)
    with ServerThread(app) as server:
        yield Stack(
            f"http://127.0.0.1:{server.port}", "", app.state.api.settings, "webhooks-console", api_key
        )


async def test_add_see_deliveries_and_failures_then_delete(
    stack: Stack, chromium: Browser, database_url: str, redis_url: str, shots: Path
) -> None:
    user = new_user()
    sid = await add_session(database_url, user)
    log = Log(redis_url)

    async def picky(_: int, frame: dict[str, Any]) -> tuple[int, dict[str, str]]:
        return (500 if frame["message"]["text"] == "bad" else 200), {}

    async with receiver(picky) as got, console_page(chromium, stack) as console:
        page = console.page
        await console.sign_in(user, "settings")
        card = page.get_by_role("region", name="Webhooks")
        await expect(card).to_be_visible()

        await card.get_by_label("Receiver URL").fill("ftp://example.com/x")
        await card.get_by_role("button", name="Add webhook").click()
        # The browser's own check (type=url accepts ftp) passes; the bridge refuses it in words.
        await expect(card.get_by_role("alert")).to_contain_text("https")
        console.clean()  # the 400 was expected

        await card.get_by_label("Receiver URL").fill(got.url)
        await card.get_by_label("Messages only").check()
        await card.get_by_role("button", name="Add webhook").click()
        shown = card.locator(".secret-value")
        await expect(shown).to_have_text(re.compile(r"^whsec_[A-Za-z0-9+/=]{40,}$"))
        secret = await shown.inner_text()
        assert secret.startswith("whsec_")
        item = card.locator(".webhook")
        await expect(item).to_have_count(1)
        await expect(item).to_contain_text("message")
        await expect(item).to_contain_text("No deliveries yet.")

        async with dispatching(config(database_url, redis_url, backoff_max_s=60.0)):
            await log.message(sid, "good")
            await log.message(sid, "bad")
            await got.wait_for(lambda f: len(f) >= 2)
            await asyncio.sleep(0.5)
        await card.get_by_role("button", name="Refresh deliveries").click()
        deliveries = item.locator(".delivery")
        await expect(deliveries).to_have_count(2)
        await expect(deliveries.nth(0)).to_contain_text("Retrying")  # newest first
        await expect(deliveries.nth(0)).to_contain_text("HTTP 500")
        await expect(deliveries.nth(1)).to_contain_text("Delivered")
        assert await unnamed_controls(page) == []
        assert await low_contrast(page) == []
        await console.shoot(shots, "settings-webhooks-1280")

        # Shown once: a reload lists the webhook without its secret.
        await page.reload()
        await expect(card.locator(".webhook")).to_have_count(1)
        assert secret not in await page.content()

        await card.get_by_role("button", name=f"Delete webhook {got.url}").click()
        await page.get_by_role("dialog").get_by_role("button", name="Delete").click()
        await expect(card.locator(".webhook")).to_have_count(0)
        console.assert_clean()
    async with stack.client(user) as client:
        assert (await client.get("/webhooks")).json() == []
    await log.aclose()
