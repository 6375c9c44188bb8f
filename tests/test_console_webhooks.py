"""Settings → Webhooks, in Chromium against a real bridge: a receiver the bridge refuses is refused in
words, an accepted one shows its signing secret once and is listed, and deleting it asks first.

The bridge here refuses loopback and private addresses (WEBHOOK_ALLOW_PRIVATE_URLS is off); the accepted
receiver is a public address written as an IP, so nothing is looked up. No number is linked: no event is
ever delivered to it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect

from tests.apikit import Stack, api_stack, new_user
from tests.consolekit import console_page
from tests.raykit import local_ray

pytestmark = [pytest.mark.ray, pytest.mark.timeout(120)]

RECEIVER = "https://93.184.215.14/hooks/whatsapp"


@pytest.fixture(scope="module")
def stack(postgres_server: str, redis_server: str) -> Iterator[Stack]:
    with local_ray(), api_stack(postgres_server, redis_server) as running:
        yield running


async def test_a_refused_receiver_is_said_and_deleting_one_asks_first(
    stack: Stack, chromium: Browser, shots: Path
) -> None:
    user = new_user()
    async with console_page(chromium, stack) as console, stack.client(user) as client:
        page = console.page
        await console.sign_in(user, "settings")
        card = page.get_by_role("region", name="Webhooks")
        url = card.get_by_label("Receiver URL")
        await url.fill("https://127.0.0.1/hooks/whatsapp")
        await card.get_by_role("button", name="Add webhook").click()
        await expect(card.get_by_role("alert")).to_have_text(
            "the URL resolves to a loopback, private, link-local or reserved address"
        )
        await console.shoot_both(shots, "webhooks-refused-{w}", show=card.get_by_role("alert"))
        _, failed = console.clean()
        assert [f for f in failed if "/webhooks" in f and ": 400" in f], failed
        assert (await client.get("/webhooks")).json() == []

        await url.fill(RECEIVER)
        await card.get_by_role("button", name="Add webhook").click()
        await expect(card.locator(".secret-value")).to_contain_text("whsec_", timeout=10_000)
        await expect(card.get_by_role("alert")).to_have_count(0)  # the refusal is gone
        listed = card.get_by_role("list", name="Webhooks").locator("li.webhook")
        await expect(listed).to_have_count(1)
        await expect(listed).to_contain_text(RECEIVER)
        await expect(listed).to_contain_text("No deliveries yet.")
        await console.shoot_both(shots, "webhooks-added-{w}", show=listed)

        delete = card.get_by_role("button", name=f"Delete webhook {RECEIVER}")
        await delete.click()
        dialog = page.get_by_role("dialog")
        await expect(dialog).to_contain_text("Delete this webhook?")
        await expect(dialog).to_contain_text(f"{RECEIVER} gets no more events")
        await console.shoot_both(shots, "webhooks-delete-{w}")
        await dialog.get_by_role("button", name="Cancel").click()
        await expect(dialog).to_have_count(0)
        await expect(delete).to_be_focused()  # back where the dialog was opened from
        await expect(listed).to_have_count(1)
        await delete.click()
        await page.get_by_role("dialog").get_by_role("button", name="Delete").click()
        await expect(listed).to_have_count(0)
        assert (await client.get("/webhooks")).json() == []
        console.assert_clean()
