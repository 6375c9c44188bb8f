"""Signing in to the console with a user's own key, in Chromium against a real bridge.

A user key alone signs in as its user (the user comes from `GET /me`): the header names them, and
Settings and Messages show that user's numbers and chats only. A key naming another user, a revoked key
and the admin key without a user are refused in words; the admin key with a user id still acts as that
user, and the header says it is the admin key.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from playwright.async_api import Browser, expect

from tests.apikit import Stack, api_stack, new_user
from tests.consolekit import ConsolePage, axe_violations, console_page, new_phone
from tests.raykit import eventually, local_ray

pytestmark = [pytest.mark.ray, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def stack(postgres_server: str, redis_server: str) -> Iterator[Stack]:
    with local_ray(), api_stack(postgres_server, redis_server, session={"qr_first_s": 60.0}) as running:
        yield running


@dataclass
class Person:
    user: str
    phone: str
    contact: str


async def _linked(client: httpx.AsyncClient, contact: str) -> Person:
    """A user with one connected number that received a message from `contact`."""
    sid = (await client.post("/sessions", json={"slot": 1})).json()["id"]
    await eventually(lambda: client.get(f"/sessions/{sid}/status"), lambda r: r.json()["qr"], 30)
    phone = new_phone()
    scanned = await client.post(f"/simulator/sessions/{sid}/scan", json={"phone": phone})
    assert scanned.status_code == 200, scanned.text
    await eventually(
        lambda: client.get(f"/sessions/{sid}/status"), lambda r: r.json()["status"] == "connected", 30
    )
    said = await client.post(
        f"/simulator/sessions/{sid}/incoming",
        json={"from": new_phone(), "text": "hello", "pushName": contact},
    )
    assert said.status_code == 200, said.text
    return Person(client.headers["X-User-Id"], phone, contact)


async def _sign_in_with(console: ConsolePage, key: str, user: str = "", screen: str = "settings") -> None:
    await console.page.goto(console.stack.base_url + f"/#/{screen}")
    await console.page.get_by_label("API key").fill(key)
    if user:
        await console.page.get_by_label("User id").fill(user)
    await console.page.get_by_role("button", name="Open").click()


async def test_a_user_key_signs_in_as_its_user_and_sees_only_their_numbers(
    stack: Stack, chromium: Browser
) -> None:
    async with stack.client(new_user()) as mine, stack.client(new_user()) as theirs:
        me = await _linked(mine, "Customer of mine")
        other = await _linked(theirs, "Customer of theirs")
    async with stack.client() as admin:
        made = (await admin.post(f"/users/{me.user}/keys", json={"name": "console"})).json()
    key = made["key"]

    async with console_page(chromium, stack) as console:
        await _sign_in_with(console, key)
        await expect(console.page.locator("#who")).to_have_text(me.user)
        card = console.page.locator('article[data-slot="1"]')
        await expect(card).to_have_attribute("data-state", "connected")
        await expect(card.locator(".phone")).to_contain_text(me.phone[-4:])
        assert await console.page.get_by_text(other.phone[-4:]).count() == 0
        await expect(console.page.locator("#live")).to_have_text("Live")  # its WebSocket token works

        await console.page.get_by_role("link", name="Messages").click()
        await expect(console.page.get_by_text(me.contact).first).to_be_visible()
        assert await axe_violations(console.page) == []
        assert await console.page.get_by_text(other.contact).count() == 0
        console.assert_clean()

        # Signed out, the key with another user's id is refused in words, and nothing opens.
        await console.page.locator("#signout").click()
        await expect(console.page.locator("#who")).to_be_hidden()
        await _sign_in_with(console, key, other.user)
        await expect(console.page.get_by_role("alert")).to_contain_text("belongs to another user")
        assert await axe_violations(console.page) == []
        await expect(console.page.locator("#nav")).to_be_hidden()
        console.clean()  # the 403 the page just showed in words

    async with stack.client() as admin:
        revoked = await admin.delete(f"/users/{me.user}/keys/{made['id']}")
        assert revoked.status_code == 204
    async with console_page(chromium, stack) as console:
        await _sign_in_with(console, key)
        await expect(console.page.get_by_role("alert")).to_contain_text("API key was refused")
        console.clean()

        # The admin key needs the user to act as; with it, the operator is that user, as before.
        await _sign_in_with(console, stack.api_key)
        await expect(console.page.get_by_role("alert")).to_contain_text("enter the user id")
        await console.page.get_by_label("User id").fill(other.user)
        await console.page.get_by_role("button", name="Open").click()
        await expect(console.page.locator("#who")).to_have_text(f"{other.user} (admin key)")
        await expect(console.page.locator('article[data-slot="1"] .phone')).to_contain_text(other.phone[-4:])
        console.assert_clean()
