"""The console's Messages screen, in Chromium against a real bridge.

The merged inbox updates live from the WebSocket; replies go out as text, a file and a voice note
recorded from Chromium's fake microphone, and the test reads what the simulated network received.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, expect

from tests.apikit import Stack, api_stack, new_user
from tests.consolekit import (
    axe_violations,
    console_page,
    low_contrast,
    shown_phone,
    unnamed_controls,
)
from tests.raykit import eventually, local_ray
from tests.threadkit import CHOOSE_FILE, chat_item, connected, incoming, sent

pytestmark = [pytest.mark.ray, pytest.mark.timeout(120)]

MB = 1024 * 1024


@pytest.fixture(scope="module")
def stack(postgres_server: str, redis_server: str) -> Iterator[Stack]:
    with local_ray(), api_stack(postgres_server, redis_server) as running:
        yield running


async def test_an_incoming_message_appears_live_in_the_inbox_and_in_the_open_chat(
    stack: Stack, chromium: Browser, shots: Path
) -> None:
    user = new_user()
    async with stack.client(user) as client, console_page(chromium, stack) as console:
        sid, _ = await connected(client, 1, "Support")
        await console.sign_in(user, "messages")
        await expect(console.page.locator("#live")).to_have_text("Live")
        await incoming(client, sid, "+15550001111", text="Hello, is the shop open?", pushName="Rita")
        rita = chat_item(console, "15550001111@s.whatsapp.net", sid)
        await expect(rita).to_contain_text("Hello, is the shop open?")
        await expect(rita.get_by_label("1 unread")).to_be_visible()
        await expect(rita).to_contain_text("via +1\u00a0415\u2011555")
        await incoming(client, sid, "+15550002222", text="Another customer", pushName="Bo")
        await incoming(client, sid, "+15550001111", text="Until when?", pushName="Rita")
        await expect(rita.get_by_label("2 unread")).to_be_visible()
        # The newest chat is on top.
        await expect(console.page.locator("button.chat-item").first).to_contain_text("Until when?")
        await rita.click()
        # On a desktop the composer is ready to type in (on a phone it is not: see the 375 px test).
        await expect(console.page.get_by_label("Message", exact=True)).to_be_focused()
        thread = console.page.locator("ol.thread")
        await expect(thread).to_contain_text("Hello, is the shop open?")
        await expect(thread).to_contain_text("Until when?")
        await expect(rita.locator(".unread")).to_have_count(0)

        async def rita_unread() -> int:
            chats = (await client.get(f"/sessions/{sid}/chats")).json()["items"]
            return int(next(c["unreadCount"] for c in chats if c["id"] == "15550001111@s.whatsapp.net"))

        await eventually(rita_unread, lambda unread: unread == 0)  # read on the server too
        five = await incoming(client, sid, "+15550001111", text="See you at five", pushName="Rita")
        await expect(thread.locator("li.bubble.theirs").last).to_contain_text("See you at five")
        # Her edit and her reaction change the bubble in place.
        chat = "15550001111@s.whatsapp.net"
        edit = {"chatId": chat, "messageId": five["id"], "text": "See you at six"}
        assert (await client.post(f"/simulator/sessions/{sid}/edit", json=edit)).status_code == 204
        react = {"chatId": chat, "messageId": five["id"], "emoji": "👍"}
        assert (await client.post(f"/simulator/sessions/{sid}/react", json=react)).status_code == 204
        edited = thread.locator(f'li.bubble[data-id="{five["id"]}"]')
        await expect(edited).to_contain_text("See you at six")
        await expect(edited).to_contain_text("edited")
        await expect(edited.get_by_label("Reactions: 👍")).to_be_visible()
        await expect(thread.locator("li.bubble")).to_have_count(3)
        assert await axe_violations(console.page) == []
        await console.shoot_both(shots, "messages-{w}")
        assert await unnamed_controls(console.page) == []
        assert await low_contrast(console.page) == []
        console.assert_clean()


async def test_replies_go_out_as_text_file_and_recorded_voice_note(stack: Stack, chromium: Browser) -> None:
    user = new_user()
    contact = "+15550003333"
    async with stack.client(user) as client, console_page(chromium, stack) as console:
        sid, _ = await connected(client, 1, "Sales")
        await incoming(client, sid, contact, text="Can you send the price list?", pushName="Noor")
        await console.sign_in(user, "messages")
        await chat_item(console, "15550003333@s.whatsapp.net").click()
        box = console.page.get_by_label("Message", exact=True)
        await box.fill("Sure, one moment")
        await box.press("Enter")
        await box.type("Line one")
        await box.press("Shift+Enter")
        await box.type("Line two")
        await box.press("Enter")
        texts = await eventually(lambda: sent(client, sid), lambda items: len(items) >= 2)
        assert [t["text"] for t in texts] == ["Sure, one moment", "Line one\nLine two"]
        assert all(t["to"] == "15550003333@s.whatsapp.net" for t in texts)
        # The ticks follow the receipts live: delivered, then read.
        mine = console.page.locator("li.bubble.mine").first
        await expect(mine).to_have_attribute("data-status", "read", timeout=20_000)
        await expect(mine.locator(".tick")).to_have_attribute("aria-label", "Read")

        upload = console.page.locator('input[type="file"]')
        await upload.set_input_files(
            files=[{"name": "prices.pdf", "mimeType": "application/pdf", "buffer": b"%PDF-1.4 price list"}]
        )
        preview = console.page.get_by_role("dialog", name="Send a file")
        await preview.get_by_role("button", name="Send").click()
        files = await eventually(lambda: sent(client, sid), lambda items: len(items) >= 3)
        assert files[2]["type"] == "document" and files[2]["fileName"] == "prices.pdf"

        # Chosen in the page (17 MB through Playwright's pipe is slow on a loaded machine).
        await upload.evaluate(CHOOSE_FILE, {"name": "video.mp4", "type": "video/mp4", "size": 17 * MB})
        refusal = console.page.locator(".composer .error")
        await expect(refusal).to_have_text("“video.mp4” is 17.0 MB; WhatsApp takes files up to 16 MB.")
        assert await axe_violations(console.page) == []

        await console.page.get_by_role("button", name="Record a voice note").click()
        await expect(console.page.locator(".recording")).to_be_visible()
        assert await axe_violations(console.page) == []
        await asyncio.sleep(1.5)
        await console.page.get_by_role("button", name="Stop and send").click()
        notes = await eventually(lambda: sent(client, sid), lambda items: len(items) >= 4, timeout=30)
        assert len(notes) == 4, "the oversize file was never sent"
        note = notes[3]
        assert note["type"] == "audio" and note["ptt"] is True
        assert note["mimetype"] == "audio/ogg; codecs=opus"
        assert note["seconds"] >= 1 and note["size"] > 1000
        await expect(console.page.locator('li.bubble.mine[data-type="audio"]')).to_have_count(1)
        console.assert_clean()


async def test_media_inline_and_as_downloads(stack: Stack, chromium: Browser) -> None:
    user = new_user()
    async with stack.client(user) as client, console_page(chromium, stack) as console:
        sid, _ = await connected(client, 1, "Media")
        sender = "+15550004444"
        image = {"type": "image", "mimetype": "image/png", "fileName": "shelf.png", "size": 2048}
        document = {
            "type": "document",
            "mimetype": "application/pdf",
            "fileName": "invoice.pdf",
            "size": 4096,
        }
        await incoming(client, sid, sender, media=image, pushName="Lee")
        await incoming(client, sid, sender, media=document, pushName="Lee")
        await console.sign_in(user, "messages")
        await chat_item(console, "15550004444@s.whatsapp.net").click()
        await expect(console.page.locator("img.media-image")).to_have_attribute("src", re.compile("^blob:"))
        assert await axe_violations(console.page) == []
        download_button = console.page.get_by_role("button", name="Download invoice.pdf (4 KB)")
        async with console.page.expect_download() as waiting:
            await download_button.click()
        download = await waiting.value
        assert download.suggested_filename == "invoice.pdf"
        saved = await download.path()
        assert len(await asyncio.to_thread(saved.read_bytes)) == 4096
        console.assert_clean()


async def test_a_contact_on_two_numbers_can_be_answered_from_either_and_the_phone_layout(
    stack: Stack, chromium: Browser, shots: Path
) -> None:
    user = new_user()
    contact = "+15550005555"
    async with stack.client(user) as client, console_page(chromium, stack, "phone") as console:
        first, _ = await connected(client, 1, "Shop")
        second, second_phone = await connected(client, 2, "Repairs")
        await incoming(client, first, contact, text="Hi shop", pushName="Sam")
        await incoming(client, second, contact, text="Hi repairs", pushName="Sam")
        await console.sign_in(user, "messages")
        jid = "15550005555@s.whatsapp.net"
        await expect(chat_item(console, jid)).to_have_count(2)
        await console.shoot_both(shots, "messages-{w}-list")
        await chat_item(console, jid, first).click()
        # Narrow: the chat replaces the list, with a way back; the keyboard waits for a tap on the
        # composer (it would cover the thread).
        await expect(console.page.locator(".list-pane")).to_be_hidden()
        await expect(console.page.locator("ol.thread")).to_contain_text("Hi shop")
        await expect(console.page.get_by_label("Message", exact=True)).to_be_visible()
        await expect(console.page.get_by_label("Message", exact=True)).not_to_be_focused()
        reply_from = console.page.get_by_label("Reply from")
        await reply_from.select_option(second)
        await expect(console.page.locator("ol.thread")).to_contain_text("Hi repairs")
        box = console.page.get_by_label("Message", exact=True)
        await box.fill("Repairs here")
        await box.press("Enter")
        await eventually(lambda: sent(client, second), lambda items: len(items) == 1)
        assert (await sent(client, second))[0]["text"] == "Repairs here"
        assert await sent(client, first) == []
        await expect(console.page.locator(".chat-head")).to_contain_text(second_phone[-4:])
        await console.shoot_both(shots, "messages-{w}-chat")
        assert await low_contrast(console.page) == []
        await console.page.get_by_role("button", name="‹ Chats").click()
        await expect(console.page.locator(".list-pane")).to_be_visible()
        console.assert_clean()


async def test_a_long_history_loads_upwards_as_the_chat_is_scrolled(stack: Stack, chromium: Browser) -> None:
    user = new_user()
    async with stack.client(user) as client, console_page(chromium, stack) as console:
        sid, _ = await connected(client, 1, "History")
        synced = await client.post(
            f"/simulator/sessions/{sid}/history", json={"chats": 1, "messagesPerChat": 90}
        )
        assert synced.status_code == 200, synced.text

        async def longest() -> tuple[str, list[dict[str, Any]]]:
            chats = (await client.get(f"/sessions/{sid}/chats")).json()["items"]
            pages = [
                (c["id"], (await client.get(f"/sessions/{sid}/chats/{c['id']}/messages?limit=100")).json())
                for c in chats
            ]
            chat_id, page = max(pages, key=lambda pair: len(pair[1]["items"]))
            return chat_id, page["items"]

        chat_id, messages = await eventually(longest, lambda found: len(found[1]) >= 90)
        await console.sign_in(user, "messages")
        await chat_item(console, chat_id).click()
        bubbles = console.page.locator("ol.thread li.bubble")
        await expect(bubbles).to_have_count(30)
        top = console.page.locator(".thread-top")
        await expect(top).to_have_text("Loading older messages…")
        for _ in range(10):
            await console.page.locator(".thread-scroll").evaluate("(el) => { el.scrollTop = 0; }")
            if await top.text_content() == "Start of the conversation":
                break
            await asyncio.sleep(0.3)
        await expect(top).to_have_text("Start of the conversation")
        assert await axe_violations(console.page) == []
        await expect(bubbles).to_have_count(len(messages))
        oldest = await bubbles.first.get_attribute("data-id")
        assert oldest == messages[-1]["id"], "the oldest message is at the top"
        console.assert_clean()


async def test_an_unlinked_numbers_chats_are_hidden_with_a_word(
    stack: Stack, chromium: Browser, shots: Path
) -> None:
    user = new_user()
    async with stack.client(user) as client, console_page(chromium, stack) as console:
        sid, phone = await connected(client, 1, "Shop")
        await incoming(client, sid, "+15550006666", text="Are you there?", pushName="Vera")
        await console.sign_in(user, "messages")
        jid = "15550006666@s.whatsapp.net"
        vera = chat_item(console, jid, sid)
        await vera.click()
        await expect(console.page.locator("ol.thread")).to_contain_text("Are you there?")
        await eventually(  # opened means read: done before the phone unlinks (else that read is a 409)
            lambda: client.get(f"/sessions/{sid}/chats"),
            lambda r: [c["unreadCount"] for c in r.json()["items"] if c["id"] == jid] == [0],
        )
        # The phone removes this linked device: the number's chats leave the inbox, and it says why.
        assert (await client.post(f"/simulator/sessions/{sid}/unlink")).status_code == 204
        notice = console.page.locator(".notice")
        hidden = "is not connected: its chats are hidden until it is linked again in Settings."
        await expect(notice).to_have_text(f"{shown_phone(phone)} {hidden}", timeout=15_000)
        await expect(vera).to_have_count(0)
        await expect(console.page.locator(".chat-pane")).to_contain_text("Choose a chat")
        await console.shoot_both(shots, "messages-unlinked-{w}")
        console.assert_clean()
