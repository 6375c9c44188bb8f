"""A message's actions in Chromium against a real bridge (issue 25): react, reply (quoted), edit your own
text within 15 minutes, delete your own for everyone, from a menu reached and used by keyboard.

Two tabs show the same chat: what one does reaches the other through the WebSocket's message and
message_update frames, and the test reads what the simulated network received.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, expect

from tests.apikit import Stack, api_stack, new_user
from tests.consolekit import ConsolePage, axe_violations, console_page
from tests.raykit import eventually, local_ray
from tests.threadkit import chat_item, connected, incoming, sent

pytestmark = [pytest.mark.ray, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def stack(postgres_server: str, redis_server: str) -> Iterator[Stack]:
    with local_ray(), api_stack(postgres_server, redis_server) as running:
        yield running


async def focused_in(page: Page, selector: str) -> bool:
    found: bool = await page.evaluate("(s) => !!document.activeElement.closest(s)", selector)
    return found


async def focused_text(page: Page) -> str:
    text: str = await page.evaluate(
        "document.activeElement.getAttribute('aria-label') || document.activeElement.textContent"
    )
    return text


def bubble(console: ConsolePage, message_id: str) -> Any:
    return console.page.locator(f'ol.thread li.bubble[data-id="{message_id}"]')


async def open_menu(console: ConsolePage, message_id: str) -> Any:
    """Focus a message's action button by keyboard from the one Tab stop, and open its menu."""
    page = console.page
    await expect(bubble(console, message_id)).to_be_visible(timeout=20_000)  # the chat's page is shown
    await page.locator(".thread-scroll").focus()
    await page.keyboard.press("Tab")
    assert await focused_in(page, "li.bubble > button.more"), "the messages' actions are the next Tab stop"
    await page.keyboard.press("End")  # the newest message's, then up
    for _ in range(40):
        if await focused_in(page, f'li.bubble[data-id="{message_id}"]'):
            break
        await page.keyboard.press("ArrowUp")
    else:
        raise AssertionError(f"the arrows never reached {message_id}")
    await page.keyboard.press("Enter")
    menu = page.get_by_role("menu", name="Message actions")
    await expect(menu).to_be_visible()
    assert await focused_text(page) == "React with 👍", "focus goes to the menu's first item"
    return menu


async def choose(console: ConsolePage, item: str) -> None:
    """Walk the open menu with the arrow keys to `item` and press Enter."""
    page = console.page
    for _ in range(12):
        if await focused_text(page) == item:
            await page.keyboard.press("Enter")
            return
        await page.keyboard.press("ArrowDown")
    raise AssertionError(f"no menu item {item}")


async def test_react_reply_edit_and_delete_from_the_keyboard_reach_every_tab(
    stack: Stack, chromium: Browser, shots: Path
) -> None:
    user, contact, jid = new_user(), "+15550007201", "15550007201@s.whatsapp.net"
    async with (
        stack.client(user) as client,
        console_page(chromium, stack) as console,
        console_page(chromium, stack) as other,
    ):
        sid, _ = await connected(client, 1, "Shoes")
        question = await incoming(client, sid, contact, text="Do you have size 42?", pushName="Rita")
        for tab in (console, other):
            await tab.sign_in(user, "messages")
            await chat_item(tab, jid).click()
            await expect(tab.page.locator("ol.thread")).to_contain_text("Do you have size 42?")
        page = console.page
        box = page.get_by_role("textbox", name="Message")
        await box.fill("Let me check")
        await box.press("Enter")
        ours = await eventually(lambda: sent(client, sid), lambda items: len(items) == 1)
        check_id = ours[0]["id"]
        await expect(bubble(other, check_id)).to_contain_text("Let me check")

        # React with the keyboard: the menu's first item.
        menu = await open_menu(console, question["id"])
        assert await axe_violations(page) == []
        await console.shoot_both(shots, "messages-menu-{w}")
        await page.keyboard.press("Enter")
        await expect(menu).to_be_hidden()
        for tab in (console, other):
            await expect(bubble(tab, question["id"]).get_by_label("Reactions: 👍")).to_be_visible()
        reaction = (await sent(client, sid))[-1]
        assert (reaction["action"], reaction["id"], reaction["emoji"]) == ("reaction", question["id"], "👍")
        assert await focused_in(page, f'li.bubble[data-id="{question["id"]}"] > button.more')

        # The contact's message can be answered and reacted to, not edited or deleted for everyone.
        await open_menu(console, question["id"])
        names = await page.get_by_role("menuitem").all_text_contents()
        assert "Reply" in names and "Remove my reaction 👍" in names
        assert "Edit" not in names and "Delete for everyone" not in names
        await page.keyboard.press("Escape")
        await expect(page.get_by_role("menu")).to_have_count(0)
        assert await focused_in(page, f'li.bubble[data-id="{question["id"]}"] > button.more')

        # Reply: the composer says to what, the message goes out quoting it, both tabs show the quote.
        await open_menu(console, question["id"])
        await choose(console, "Reply")
        await expect(box).to_be_focused()
        await expect(page.locator(".replying")).to_contain_text("Replying to Rita")
        await expect(page.locator(".replying")).to_contain_text("Do you have size 42?")
        assert await axe_violations(page) == []
        await console.shoot_both(shots, "messages-replying-{w}")
        await page.keyboard.type("Yes, in black")
        await page.keyboard.press("Enter")
        await expect(page.locator(".replying")).to_be_hidden()
        answer = (await eventually(lambda: sent(client, sid), lambda items: len(items) == 3))[-1]
        assert (answer["text"], answer["quotedId"]) == ("Yes, in black", question["id"])
        for tab in (console, other):
            quote = bubble(tab, answer["id"]).locator(".quote")
            await expect(quote).to_contain_text("Rita")
            await expect(quote).to_contain_text("Do you have size 42?")

        # The reply's menu goes to the message it quotes.
        await open_menu(console, answer["id"])
        await choose(console, "Show the replied message")
        assert await focused_in(page, f'li.bubble[data-id="{question["id"]}"] > button.more')

        # Edit our own text: a dialog, Enter saves, both tabs show the new words and "edited".
        await open_menu(console, check_id)
        await choose(console, "Edit")
        dialog = page.get_by_role("dialog", name="Edit message")
        field = dialog.get_by_label("Message")
        await expect(field).to_be_focused()
        await expect(field).to_have_value("Let me check")
        assert await axe_violations(page) == []
        await field.fill("Let me check the stock")
        await field.press("Enter")
        await expect(dialog).to_be_hidden()
        for tab in (console, other):
            await expect(bubble(tab, check_id).locator(".text")).to_have_text("Let me check the stock")
            await expect(bubble(tab, check_id).locator(".meta")).to_contain_text("edited")
        edit = (await sent(client, sid))[-1]
        assert (edit["action"], edit["id"], edit["text"]) == ("edit", check_id, "Let me check the stock")
        assert await focused_in(page, f'li.bubble[data-id="{check_id}"] > button.more')

        # Delete for everyone, confirmed in a dialog; Cancel first sends nothing.
        await open_menu(console, answer["id"])
        await choose(console, "Delete for everyone")
        confirm = page.get_by_role("dialog", name="Delete for everyone?")
        await expect(confirm).to_be_visible()
        assert await axe_violations(page) == []
        await confirm.get_by_role("button", name="Cancel").click()
        await expect(confirm).to_be_hidden()
        assert len(await sent(client, sid)) == 4
        await open_menu(console, answer["id"])
        await choose(console, "Delete for everyone")
        await confirm.get_by_role("button", name="Delete for everyone").click()
        for tab in (console, other):
            await expect(bubble(tab, answer["id"])).to_contain_text("This message was deleted.")
            await expect(bubble(tab, answer["id"]).locator(".quote")).to_have_count(0)
        revoke = (await sent(client, sid))[-1]
        assert (revoke["action"], revoke["id"]) == ("revoke", answer["id"])
        # A deleted message has no actions; focus went to a neighbour's, not lost.
        await expect(bubble(console, answer["id"]).locator("button.more")).to_have_count(0)
        assert await focused_in(page, "li.bubble > button.more")
        assert await axe_violations(page) == []

        # 16 minutes later (this tab's clock), WhatsApp would refuse an edit: it is no longer offered.
        await page.clock.set_fixed_time(datetime.now(UTC) + timedelta(minutes=16))
        await open_menu(console, check_id)
        names = await page.get_by_role("menuitem").all_text_contents()
        assert "Delete for everyone" in names and "Edit" not in names, names
        await page.keyboard.press("Escape")
        console.assert_clean()
        other.assert_clean()


async def test_a_reaction_arriving_while_the_menu_is_open_leaves_the_focus_where_it_was(
    stack: Stack, chromium: Browser
) -> None:
    user, contact, jid = new_user(), "+15550007202", "15550007202@s.whatsapp.net"
    async with stack.client(user) as client, console_page(chromium, stack) as console:
        sid, _ = await connected(client, 1, "Shoes")
        question = await incoming(client, sid, contact, text="Still open?", pushName="Sam")
        await console.sign_in(user, "messages")
        await chat_item(console, jid).click()
        page = console.page
        await open_menu(console, question["id"])
        await choose_without_pressing(console, "Reply")
        # The contact reacts meanwhile: the bubble is redrawn, its menu with it.
        reacted = await client.post(
            f"/simulator/sessions/{sid}/react",
            json={"chatId": jid, "messageId": question["id"], "emoji": "❤️"},
        )
        assert reacted.status_code == 204, reacted.text
        await expect(bubble(console, question["id"]).get_by_label("Reactions: ❤️")).to_be_visible()
        await expect(page.get_by_role("menu", name="Message actions")).to_be_visible()
        assert await focused_text(page) == "Reply"
        console.assert_clean()


async def choose_without_pressing(console: ConsolePage, item: str) -> None:
    """Walk the open menu with the arrow keys to `item`, leaving the focus there."""
    for _ in range(12):
        if await focused_text(console.page) == item:
            return
        await console.page.keyboard.press("ArrowDown")
    raise AssertionError(f"no menu item {item}")
