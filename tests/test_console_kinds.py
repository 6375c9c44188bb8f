"""Where the unread messages begin, and polls, locations and contact cards, in Chromium against a real
bridge (issue 25).

A chat opened with unread messages shows a "new messages" marker above the first of them, as WhatsApp
Web does, and opens there. A poll shows its options and its tally, which follows the votes live; a
location has a map link that is safe to click; a contact is a card with its name and number, whether
the contact sent them or this number did.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect

from tests.apikit import Stack, api_stack, new_user
from tests.consolekit import axe_violations, console_page, low_contrast, shown_phone
from tests.raykit import eventually, local_ray
from tests.threadkit import chat_item, connected, incoming

pytestmark = [pytest.mark.ray, pytest.mark.timeout(180)]

POLL = {"question": "Which day suits you?", "options": ["Monday", "Tuesday", "Friday"]}
PLACE = {"latitude": 52.520008, "longitude": 13.404954, "name": "Shop Berlin", "address": "Alexanderplatz 1"}
MAP = "https://www.openstreetmap.org/?mlat=52.520008&mlon=13.404954#map=16/52.520008/13.404954"


@pytest.fixture(scope="module")
def stack(postgres_server: str, redis_server: str) -> Iterator[Stack]:
    with local_ray(), api_stack(postgres_server, redis_server) as running:
        yield running


async def test_the_new_messages_marker_and_polls_places_and_contacts(
    stack: Stack, chromium: Browser, shots: Path
) -> None:
    user, contact, jid = new_user(), "+15550007001", "15550007001@s.whatsapp.net"
    async with stack.client(user) as client, console_page(chromium, stack) as console:
        sid, _ = await connected(client, 1, "Shop")
        await incoming(client, sid, contact, text="Earlier question", pushName="Ines")
        read = await client.post(f"/sessions/{sid}/chats/{jid}/read")
        assert read.status_code == 200, read.text
        await incoming(client, sid, contact, text="Are you open today?", pushName="Ines")
        poll = await incoming(client, sid, contact, poll=POLL, pushName="Ines")
        await incoming(client, sid, contact, location=PLACE, pushName="Ines")
        card = {"displayName": "Marta Ruiz", "phone": "+34600111222"}
        await incoming(client, sid, contact, contacts=[card], pushName="Ines")

        page = console.page
        await console.sign_in(user, "messages")
        await expect(chat_item(console, jid).get_by_label("4 unread")).to_be_visible()
        await chat_item(console, jid).click()
        thread = page.locator("ol.thread")
        marker = thread.locator("li.unread-marker")
        await expect(marker).to_have_text("4 unread messages")
        await expect(marker).to_be_in_viewport()
        around = "(m) => [m.previousElementSibling.textContent, m.nextElementSibling.textContent]"
        before, after = await marker.evaluate(around)
        assert "Earlier question" in before and "Are you open today?" in after, (before, after)
        await expect(thread.locator("li.unread-marker")).to_have_count(1)

        # The poll, and its tally as the contact votes.
        bubble = thread.locator(f'li.bubble[data-id="{poll["id"]}"]')
        await expect(bubble.locator(".poll-question")).to_have_text("Which day suits you?")
        await expect(bubble.locator(".poll-option")).to_have_count(3)
        await expect(bubble.locator(".poll-total")).to_have_text("0 people voted")
        vote = {"chatId": jid, "messageId": poll["id"], "options": ["Friday"]}
        assert (await client.post(f"/simulator/sessions/{sid}/vote", json=vote)).status_code == 204
        friday = bubble.locator(".poll-option").filter(has_text="Friday")
        await expect(friday.locator(".poll-count")).to_have_text("1 vote")
        await expect(bubble.locator(".poll-total")).to_have_text("1 person voted")
        await expect(bubble.locator('.poll-option[data-votes="0"]')).to_have_count(2)

        # The place: its name, address and a map link that keeps this page to itself.
        place = thread.locator('li.bubble[data-type="location"]')
        await expect(place).to_contain_text("Shop Berlin")
        await expect(place).to_contain_text("Alexanderplatz 1")
        link = place.get_by_role("link", name="Open in map")
        assert await link.get_attribute("href") == MAP
        assert await link.get_attribute("rel") == "noopener noreferrer"
        assert await link.get_attribute("target") == "_blank"

        # The contact card: a name and a number, not a vCard's text.
        person = thread.locator('li.bubble[data-type="contact"] .contact-card')
        await expect(person.locator(".contact-name")).to_have_text("Marta Ruiz")
        number = await person.locator(".contact-number").text_content() or ""
        assert re.sub(r"\s", "", number) == "+34600111222", number
        await expect(thread).not_to_contain_text("BEGIN:VCARD")
        assert await axe_violations(page) == []
        await console.shoot_both(shots, "messages-kinds-{w}")

        # This number sends one of each: they show the same way, as ours.
        for kind, body in (
            ("poll", {"question": "Pick up or delivery?", "options": ["Pick up", "Delivery"]}),
            ("location", {"latitude": 48.8566, "longitude": 2.3522, "name": "Paris shop"}),
            ("contact", {"name": "Front desk", "phone": "+15550007002"}),
        ):
            response = await client.post(f"/sessions/{sid}/send/{kind}", json={"to": jid, **body})
            assert response.status_code == 200, response.text
        mine = thread.locator("li.bubble.mine")
        await expect(mine.locator(".poll-option")).to_have_count(2)
        await expect(mine.locator(".location")).to_contain_text("Paris shop")
        await expect(mine.get_by_role("link", name="Open in map")).to_have_attribute(
            "rel", "noopener noreferrer"
        )
        await expect(mine.locator(".contact-name")).to_have_text("Front desk")
        number = await mine.locator(".contact-number").text_content() or ""
        assert number == shown_phone("+15550007002"), number
        # The marker counts the contact's messages only, and stays where it was.
        await expect(marker).to_have_text("4 unread messages")
        assert await axe_violations(page) == []
        assert await low_contrast(page) == []
        await console.shoot_both(shots, "messages-kinds-sent-{w}", show=mine.last)
        await page.set_viewport_size({"width": 375, "height": 740})
        assert await low_contrast(page) == []

        async def unread() -> int:
            chats = (await client.get(f"/sessions/{sid}/chats")).json()["items"]
            return int(next(c["unreadCount"] for c in chats if c["id"] == jid))

        await eventually(unread, lambda count: count == 0)  # opening the chat read it
        console.assert_clean()


async def test_a_chat_without_unread_messages_has_no_marker_and_opens_at_its_end(
    stack: Stack, chromium: Browser
) -> None:
    user, contact, jid = new_user(), "+15550007101", "15550007101@s.whatsapp.net"
    async with stack.client(user) as client, console_page(chromium, stack) as console:
        sid, _ = await connected(client, 1, "Shop")
        for n in range(12):
            await incoming(client, sid, contact, text=f"line {n} " + "words " * 30, pushName="Ola")
        assert (await client.post(f"/sessions/{sid}/chats/{jid}/read")).status_code == 200
        await console.sign_in(user, "messages")
        await chat_item(console, jid).click()
        thread = console.page.locator("ol.thread")
        await expect(thread.locator("li.bubble")).to_have_count(12)
        await expect(thread.locator("li.unread-marker")).to_have_count(0)
        await expect(thread.locator("li.bubble").last).to_be_in_viewport()
        console.assert_clean()
