"""The console with several tabs open, in Chromium against a real bridge (issue 25, defects 1, 2, 3, 7).

A slot belongs to its phone (Reconnect names the phone to scan, another phone starts afresh); a history
sync and a removed number reach every open tab without reloading; "Reply from" keeps the draft, and the
open chat and its draft survive a reload. Each test is its own user; tabs are separate browser contexts.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, expect

from tests.apikit import Stack, api_stack, new_user
from tests.consolekit import ConsolePage, axe_violations, console_page, new_phone, shown_phone
from tests.inboxkit import chat_of
from tests.raykit import eventually, local_ray

pytestmark = [pytest.mark.ray, pytest.mark.timeout(150)]


@pytest.fixture(scope="module")
def stack(postgres_server: str, redis_server: str) -> Iterator[Stack]:
    with local_ray(), api_stack(postgres_server, redis_server) as running:
        yield running


@asynccontextmanager
async def tabs(chromium: Browser, stack: Stack, user: str, *screens: str) -> AsyncIterator[list[ConsolePage]]:
    """One signed-in tab per screen, each live."""
    async with AsyncExitStack() as stack_of_tabs:
        opened = []
        for screen in screens:
            console = await stack_of_tabs.enter_async_context(console_page(chromium, stack))
            await console.sign_in(user, screen)
            await expect(console.page.locator("#live")).to_have_text("Live")
            opened.append(console)
        yield opened


async def linked(client: httpx.AsyncClient, slot: int, phone: str, sid: str | None = None) -> str:
    """`phone` scans the slot's QR (a new session unless `sid`); the session id once connected."""
    if sid is None:
        sid = (await client.post("/sessions", json={"slot": slot})).json()["id"]
    await eventually(lambda: client.get(f"/sessions/{sid}/status"), lambda r: r.json()["qr"], 30)
    scanned = await client.post(
        f"/simulator/sessions/{sid}/scan", json={"phone": phone, "displayName": "Ana"}
    )
    assert scanned.status_code == 200, scanned.text
    await eventually(
        lambda: client.get(f"/sessions/{sid}/status"), lambda r: r.json()["status"] == "connected", 30
    )
    return sid


async def receive(client: httpx.AsyncClient, sid: str, sender: str, text: str) -> None:
    got = await client.post(f"/simulator/sessions/{sid}/incoming", json={"from": sender, "text": text})
    assert got.status_code == 200, got.text


async def test_reconnect_names_the_phone_and_another_phone_starts_afresh(
    stack: Stack, chromium: Browser, shots: Path
) -> None:
    user, phone_a, phone_b, contact = new_user(), new_phone(), new_phone(), new_phone()
    contact_jid = contact[1:] + "@s.whatsapp.net"
    async with stack.client(user) as client:
        sid = await linked(client, 2, phone_a)
        await receive(client, sid, contact, "from A's customer")
        async with tabs(chromium, stack, user, "settings", "messages") as (console, inbox):
            page = console.page
            await inbox.page.locator(f'button.chat-item[data-chat="{contact_jid}"]').click()
            await expect(inbox.page.locator("ol.thread")).to_contain_text("from A's customer")
            # Opening the chat marked it read: done before the phone unlinks (else that read is a 409).
            await eventually(lambda: chat_of(client, sid, contact_jid), lambda c: c["unreadCount"] == 0)
            assert (await client.post(f"/simulator/sessions/{sid}/unlink")).status_code == 204
            card = page.locator('article[data-slot="2"]')
            keep = f"Scan with {shown_phone(phone_a)} to keep this number's chats."
            await expect(card).to_contain_text(keep)
            await console.shoot(shots, "settings-unlinked-keeps-phone-1280")
            await page.set_viewport_size({"width": 375, "height": 740})
            await console.shoot(shots, "settings-unlinked-keeps-phone-375")
            await card.get_by_role("button", name="Reconnect").click()
            dialog = page.get_by_role("dialog")
            await expect(dialog).to_contain_text(keep)
            await expect(dialog).to_contain_text(f"Another phone replaces {shown_phone(phone_a)} here")
            # On a phone the pairing code comes first (it cannot scan its own screen), prefilled with that
            # phone, under the same warning.
            phone_tab = dialog.get_by_role("tab", name="Phone number")
            await expect(phone_tab).to_have_attribute("aria-selected", "true")
            await expect(dialog.get_by_text(keep)).to_be_visible()
            await expect(
                dialog.get_by_role("textbox", name="Phone number of the WhatsApp account")
            ).to_have_value(phone_a[2:])
            await console.shoot(shots, "connect-keep-phone-375")
            await page.set_viewport_size({"width": 1280, "height": 800})
            await dialog.get_by_role("tab", name="QR code").click()
            await expect(page.locator("img.qr")).to_be_visible(timeout=20_000)
            await console.shoot(shots, "connect-keep-phone-1280")
            await linked(client, 2, phone_b, sid)
            await expect(dialog).to_be_hidden()
            # The tab that had A's chat open closes it and says why: nothing can be sent into it from B.
            await expect(inbox.page.locator(".notice")).to_contain_text(
                f"{shown_phone(phone_b)} replaced {shown_phone(phone_a)} in slot 2", timeout=10_000
            )
            await expect(inbox.page.locator(".chat-pane")).to_contain_text("Choose a chat")
            await expect(inbox.page.locator(f'button.chat-item[data-chat="{contact_jid}"]')).to_have_count(0)
            inbox.assert_clean()
            await page.goto(stack.base_url + "/#/messages")
            await expect(page.locator("button.chat-item").first).to_be_visible()
            # None of A's conversations shows "via" B.
            await expect(page.locator(f'button.chat-item[data-chat="{contact_jid}"]')).to_have_count(0)
            newest = page.locator("button.chat-item").first
            await expect(newest).to_contain_text(f"via {shown_phone(phone_b)}")
            console.assert_clean()


async def test_a_history_sync_reaches_every_open_tab(stack: Stack, chromium: Browser, shots: Path) -> None:
    user = new_user()
    async with stack.client(user) as client:
        sid = await linked(client, 1, new_phone())
        await eventually(
            lambda: client.get(f"/sessions/{sid}/chats"), lambda r: len(r.json()["items"]) == 2, 15
        )
        async with tabs(chromium, stack, user, "messages", "messages") as both:
            for console in both:
                await expect(console.page.locator("button.chat-item")).to_have_count(2)
            got = await client.post(
                f"/simulator/sessions/{sid}/history", json={"chats": 8, "messagesPerChat": 2}
            )
            assert got.status_code == 200
            for console in both:
                # 5 of the 8 are direct chats (the inbox leaves groups out by default).
                await expect(console.page.locator("button.chat-item")).to_have_count(7, timeout=10_000)
                assert await axe_violations(console.page) == []
                console.assert_clean()
            await both[0].shoot_both(shots, "messages-history-synced-{w}")


async def test_other_tabs_learn_a_number_was_removed(stack: Stack, chromium: Browser, shots: Path) -> None:
    user, contact = new_user(), new_phone()
    async with stack.client(user) as client:
        first = await linked(client, 1, new_phone())
        await receive(client, first, contact, "hi")
        for slot in (2, 3):
            assert (await client.post("/sessions", json={"slot": slot})).status_code == 201
        async with tabs(chromium, stack, user, "settings", "settings", "messages") as (acting, other, inbox):
            await expect(other.page.locator("#slots-note")).to_contain_text("All 3 numbers are in use")
            contact_item = inbox.page.locator(f'button.chat-item[data-chat="{contact[1:]}@s.whatsapp.net"]')
            await expect(contact_item).to_be_visible()
            await contact_item.click()
            # Slot 3 is a link still pending (stopped, nothing to delete), slot 1 a connected number.
            for slot, asked, confirm in (
                (3, "Stop linking slot 3?", "Stop linking"),
                (1, "Disconnect", "Disconnect"),
            ):
                await (
                    acting.page.locator(f'article[data-slot="{slot}"]')
                    .get_by_role("button", name=re.compile("Cancel|Disconnect"))
                    .click()
                )
                dialog = acting.page.get_by_role("dialog")
                await expect(dialog).to_contain_text(asked)
                await dialog.get_by_role("button", name=confirm).click()
            # The other tabs know at once: free slots, no stale chats, and a word on what happened.
            for slot in (3, 1):
                card = other.page.locator(f'article[data-slot="{slot}"]')
                await expect(card).to_contain_text("No number linked.", timeout=5_000)
                await expect(card.get_by_role("button", name="Connect")).to_be_enabled()
            await expect(other.page.locator("#slots-note")).not_to_contain_text("All 3 numbers are in use")
            await expect(inbox.page.locator("button.chat-item")).to_have_count(0, timeout=5_000)
            await expect(inbox.page.locator(".notice")).to_contain_text("was removed")
            await expect(inbox.page.locator(".chat-pane")).to_contain_text("Choose a chat")
            await inbox.shoot_both(shots, "messages-removed-{w}")
            await other.shoot_both(shots, "settings-removed-elsewhere-{w}")
            for console in (acting, other, inbox):
                console.assert_clean()


async def test_reply_from_keeps_the_draft_and_a_reload_keeps_chat_and_draft(
    stack: Stack, chromium: Browser, shots: Path
) -> None:
    user, contact = new_user(), new_phone()
    contact_jid = contact[1:] + "@s.whatsapp.net"
    async with stack.client(user) as client:
        one = await linked(client, 1, new_phone())
        two = await linked(client, 2, new_phone())
        await receive(client, one, contact, "to number one")
        await receive(client, two, contact, "to number two")
        async with tabs(chromium, stack, user, "messages") as (console,):
            page = console.page
            await page.locator(f'button.chat-item[data-chat="{contact_jid}"][data-session="{one}"]').click()
            thread = page.locator("ol.thread")
            await expect(thread).to_contain_text("to number one")
            box = page.get_by_role("textbox", name="Message")
            await box.fill("a half-written reply")
            await page.get_by_label("Reply from").select_option(two)
            # Number two's conversation with the contact, the draft as it was, focus where it was.
            await expect(thread).to_contain_text("to number two")
            await expect(box).to_have_value("a half-written reply")
            await expect(page.get_by_label("Reply from")).to_be_focused()
            assert await axe_violations(page) == []
            assert page.url.endswith(f"#/messages/{two}/{contact_jid.replace('@', '%40')}")
            await page.reload()
            await expect(page.locator("ol.thread")).to_contain_text("to number two")
            console.clean()  # what the reload cut short
            await expect(page.get_by_role("textbox", name="Message")).to_have_value("a half-written reply")
            await console.shoot_both(shots, "messages-restored-{w}")
            # A contact with no name is titled by their number, written as numbers are everywhere.
            await expect(page.locator(".chat-head h2")).to_have_text(shown_phone(contact))
            await expect(page.locator(".chat-head .contact-phone")).to_have_count(0)
            # Narrower (a phone turned), the draft wraps and the box grows to show all of it.
            box = page.get_by_role("textbox", name="Message")
            wide = await box.bounding_box()
            await page.set_viewport_size({"width": 375, "height": 740})
            hidden = "(el) => el.scrollHeight - el.clientHeight"  # pixels of the draft out of sight
            await eventually(lambda: box.evaluate(hidden), lambda d: d <= 2, 10)
            narrow = await box.bounding_box()
            assert wide and narrow and narrow["height"] > wide["height"], (wide, narrow)
            await page.set_viewport_size({"width": 1280, "height": 800})
            await page.get_by_role("textbox", name="Message").press("Enter")
            sent = await eventually(
                lambda: client.get(f"/simulator/sessions/{two}/sent"),
                lambda r: any(m.get("text") == "a half-written reply" for m in r.json()),
                15,
            )
            assert sent.status_code == 200
            await expect(page.get_by_role("textbox", name="Message")).to_have_value("")
            console.assert_clean()
