"""The inbox basics people expect from WhatsApp Web, in Chromium against a real bridge (issue 25).

Unread chats in bold with the total in the tab's title, a day separator, links that are safe to click
(http and https only, no referrer, no opener), right-to-left text laid out by its own direction, sender
names in groups only, the contact's number in the chat header, search within a chat, a composer that
grows to about six lines, and chats found by name and by number. Groups are in the inbox here
(INBOX_CHATS=all), as their members' names are.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect

from tests.apikit import Stack, api_stack, new_user
from tests.consolekit import axe_violations, console_page, shown_phone
from tests.raykit import eventually, local_ray
from tests.threadkit import chat_item, connected

BOLD = re.compile(r"^[7-9]00$")  # a computed font-weight of 700 or more

pytestmark = [pytest.mark.ray, pytest.mark.timeout(150)]


@pytest.fixture(scope="module")
def stack(postgres_server: str, redis_server: str) -> Iterator[Stack]:
    with local_ray(), api_stack(postgres_server, redis_server, session={"inbox_chats": "all"}) as running:
        yield running


async def test_the_inbox_reads_as_whatsapp_web_does(stack: Stack, chromium: Browser, shots: Path) -> None:
    user, contact = new_user(), "+15550009001"
    jid = "15550009001@s.whatsapp.net"
    async with stack.client(user) as client, console_page(chromium, stack) as console:
        sid, _ = await connected(client, 1, "Shop")
        texts = [
            "see https://example.org/a?b=1, or javascript:alert(1)",
            "مرحبا، هل المتجر مفتوح؟",
        ]
        for text in texts:
            body = {"from": contact, "text": text, "pushName": "Rana"}
            assert (await client.post(f"/simulator/sessions/{sid}/incoming", json=body)).status_code == 200
        page = console.page
        await console.sign_in(user, "messages")
        item = page.locator(f'button.chat-item[data-chat="{jid}"]')
        await expect(item.get_by_label("2 unread")).to_be_visible()
        # Read with retries: a live frame may redraw the list between finding the name and reading it.
        await expect(item.locator(".chat-name"), "an unread chat is in bold").to_have_css("font-weight", BOLD)
        title = await page.title()
        assert title.startswith("(") and title.endswith(") Messages · WhatsApp bridge console"), title
        total = int(title[1 : title.index(")")])  # the history's unread chats count too
        assert total >= 2
        await item.click()
        after = f"({total - 2}) Messages" if total > 2 else "Messages"
        await expect(page).to_have_title(f"{after} · WhatsApp bridge console", timeout=10_000)
        thread = page.locator("ol.thread")
        await expect(thread.locator("li.day").last).to_have_text("Today")
        links = thread.locator("a")
        await expect(links).to_have_count(1)
        assert await links.get_attribute("href") == "https://example.org/a?b=1"
        assert await links.get_attribute("rel") == "noopener noreferrer"
        assert await links.get_attribute("target") == "_blank"
        arabic = thread.locator("p.text").filter(has_text="مرحبا")
        assert await arabic.get_attribute("dir") == "auto"
        assert await arabic.evaluate("(el) => getComputedStyle(el).direction") == "rtl"
        await expect(thread.locator(".sender")).to_have_count(0)  # a 1:1 chat: no sender names
        await expect(page.locator(".chat-head")).to_contain_text(shown_phone("+15550009001"))
        # Search within the chat (the bridge's full-text route).
        find = page.get_by_role("searchbox", name="Search in this chat")
        await find.fill("example")
        await find.press("Enter")
        await expect(page.get_by_role("list", name="Messages found")).to_contain_text(
            "see https://example.org"
        )
        await expect(page.locator(".chat-search")).to_contain_text("1 message found")
        await find.fill("nothing like it")
        await find.press("Enter")
        await expect(page.locator(".chat-search")).to_contain_text("No message matches")
        box = page.get_by_role("textbox", name="Message")
        one_line = (await box.bounding_box() or {}).get("height", 0)
        await box.fill("\n".join(f"line {n}" for n in range(4)))
        await box.dispatch_event("input")
        four_lines = (await box.bounding_box() or {}).get("height", 0)
        await box.fill("\n".join(f"line {n}" for n in range(20)))
        await box.dispatch_event("input")
        many_lines = (await box.bounding_box() or {}).get("height", 0)
        assert one_line < four_lines < many_lines <= one_line * 6.5, (one_line, four_lines, many_lines)
        await console.shoot_both(shots, "messages-basics-{w}")
        assert await axe_violations(page) == []
        console.assert_clean()


async def test_chats_are_found_by_name_and_by_number(stack: Stack, chromium: Browser) -> None:
    user = new_user()
    async with stack.client(user) as client, console_page(chromium, stack) as console:
        sid, _ = await connected(client, 1, "Shop")
        for sender, name in (("+15550008101", "Olga Petrova"), ("+15550008202", "Omar Haddad")):
            body = {"from": sender, "text": f"hello from {name}", "pushName": name}
            assert (await client.post(f"/simulator/sessions/{sid}/incoming", json=body)).status_code == 200
        page = console.page
        await console.sign_in(user, "messages")
        items = page.locator("button.chat-item")
        await expect(items).to_have_count(5)  # and the pairing's 3 history chats (one a group)
        # "WhatsApp" is said, not a pressed toggle that does nothing.
        await expect(page.get_by_role("button", name="WhatsApp")).to_have_count(0)
        search = page.get_by_role("searchbox", name="Search chats")
        await search.fill("omar")
        await expect(items).to_have_count(1)
        await expect(items.first).to_contain_text("Omar Haddad")
        await search.fill("(555) 000-8101")  # a number as people write it
        await expect(items).to_have_count(1)
        await expect(items.first).to_contain_text("Olga Petrova")
        await search.fill("nobody like this")
        await expect(page.locator(".chat-list")).to_contain_text("No chat matches")
        assert await axe_violations(page) == []
        await search.fill("")
        await expect(items).to_have_count(5)
        console.assert_clean()


async def test_search_reaches_chats_and_messages_beyond_the_loaded_list(
    stack: Stack, chromium: Browser, shots: Path
) -> None:
    user = new_user()
    async with stack.client(user) as client, console_page(chromium, stack) as console:
        sid, _ = await connected(client, 1, "Shop")
        # The oldest of 101 chats: the list loads the newest 100, so it is not among them.
        zelda = {"from": "+15550007000", "text": "where is the zeppelin parked", "pushName": "Zelda Quist"}
        assert (await client.post(f"/simulator/sessions/{sid}/incoming", json=zelda)).status_code == 200
        for batch in range(0, 100, 10):
            sends = [
                client.post(
                    f"/simulator/sessions/{sid}/incoming",
                    json={"from": f"+1555001{n:04d}", "text": f"hi {n}"},
                )
                for n in range(batch, batch + 10)
            ]
            assert all(r.status_code == 200 for r in await asyncio.gather(*sends))
        await eventually(
            lambda: client.get("/inbox/chats", params={"limit": 100}),
            lambda r: "15550007000@s.whatsapp.net" not in [c["id"] for c in r.json()["items"]],
            30,
        )
        page = console.page
        await console.sign_in(user, "messages")
        await expect(page.locator("button.chat-item")).to_have_count(100)
        search = page.get_by_role("searchbox", name="Search chats")
        await search.fill("zelda")
        await expect(page.locator(".chat-list")).to_contain_text("No chat matches")
        found = page.get_by_role("list", name="More chats").locator("button")
        await expect(found).to_have_count(1)
        await expect(found).to_contain_text("Zelda Quist")
        await expect(page.locator(".inbox-found [role=status]")).to_have_text("In all chats: 1 more chat.")
        await search.fill("555 000 7000")  # by number, as people write it
        await expect(found).to_have_count(1)
        await search.fill("zeppelin")
        message = page.get_by_role("list", name="Messages in all chats").locator("button")
        await expect(message).to_have_count(1)
        await expect(message).to_contain_text("where is the zeppelin parked")
        await console.shoot_both(shots, "messages-search-{w}")
        assert await axe_violations(page) == []
        await message.click()
        await expect(page.locator(".chat-head h2")).to_have_text("Zelda Quist")
        await expect(page.locator(".thread")).to_contain_text("where is the zeppelin parked")
        console.assert_clean()


async def test_a_group_shows_who_said_what(stack: Stack, chromium: Browser, shots: Path) -> None:
    user, group = new_user(), "120363012345678901@g.us"
    async with stack.client(user) as client, console_page(chromium, stack) as console:
        sid, _ = await connected(client, 1, "Shop")
        for member, name, text in (
            ("+15551250002", "Bob", "dinner at 8?"),
            ("+15551250003", "Carla", "I'll bring dessert"),
        ):
            body = {"from": group, "sender": member, "pushName": name, "text": text, "subject": "Family"}
            got = await client.post(f"/simulator/sessions/{sid}/incoming", json=body)
            assert got.status_code == 200, got.text
        page = console.page
        await console.sign_in(user, "messages")
        item = chat_item(console, group, sid)
        await expect(item).to_contain_text("Family")
        await item.click()
        thread = page.locator("ol.thread")
        await expect(page.locator(".chat-head h2")).to_have_text("Family")
        for name, text in (("Bob", "dinner at 8?"), ("Carla", "I'll bring dessert")):
            bubble = thread.locator("li.bubble.theirs").filter(has_text=text)
            await expect(bubble.locator(".sender")).to_have_text(name)
        # This number's own message carries no name.
        box = page.get_by_role("textbox", name="Message")
        await box.fill("See you both there")
        await box.press("Enter")
        mine = thread.locator("li.bubble.mine").filter(has_text="See you both there")
        await expect(mine).to_be_visible()
        await expect(mine.locator(".sender")).to_have_count(0)
        await expect(thread.locator(".sender")).to_have_count(2)
        await console.shoot_both(shots, "messages-group-{w}")
        console.assert_clean()
