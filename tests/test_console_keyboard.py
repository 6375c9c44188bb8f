"""The console by keyboard alone and through axe-core, in Chromium against a real bridge (issue 25).

Three flows walked with the keyboard only: linking a number (and closing the dialog), reading and
answering a chat, disconnecting a number. Focus returns where it came from, stays visible (on the green
header and on Attach), the chat list is one Tab stop walked with the arrow keys, and the skip link
works without losing the screen. axe finds nothing on any state these walks reach.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from playwright.async_api import Browser, Page, expect

from tests.apikit import Stack, api_stack, new_user
from tests.consolekit import ConsolePage, axe_violations, console_page, new_phone
from tests.raykit import eventually, local_ray

pytestmark = [pytest.mark.ray, pytest.mark.timeout(150)]


@pytest.fixture(scope="module")
def stack(postgres_server: str, redis_server: str) -> Iterator[Stack]:
    with local_ray(), api_stack(postgres_server, redis_server) as running:
        yield running


async def tab_to(page: Page, what: str, *, back: bool = False, limit: int = 40) -> None:
    """Press Tab (Shift+Tab with `back`) until the focused element matches the CSS selector `what`."""
    for _ in range(limit):
        if await page.evaluate("(s) => document.activeElement && document.activeElement.matches(s)", what):
            return
        await page.keyboard.press("Shift+Tab" if back else "Tab")
    raise AssertionError(f"{what} never got focus by keyboard")


async def focused(page: Page, what: str) -> bool:
    found: bool = await page.evaluate("(s) => document.activeElement.matches(s)", what)
    return found


async def outline(page: Page, selector: str) -> tuple[str, str]:
    script = "(s) => { const c = getComputedStyle(document.querySelector(s));"
    script += " return [c.outlineStyle, c.outlineColor]; }"
    style: list[str] = await page.evaluate(script, selector)
    return style[0], style[1]


async def no_axe(console: ConsolePage, state: str) -> None:
    found = await axe_violations(console.page)
    assert found == [], f"axe on {state}: {found}"


async def sign_in_by_keyboard(console: ConsolePage, user: str, screen: str) -> None:
    page = console.page
    await page.goto(console.stack.base_url + f"/#/{screen}")
    await expect(page.get_by_label("API key")).to_be_focused()
    await no_axe(console, "sign-in")
    await page.keyboard.type(console.stack.api_key)
    await page.keyboard.press("Tab")
    await page.keyboard.type(user)
    await page.keyboard.press("Enter")
    await expect(page.locator("#nav")).to_be_visible()


async def linked(client: httpx.AsyncClient, slot: int) -> str:
    sid = (await client.post("/sessions", json={"slot": slot})).json()["id"]
    await eventually(lambda: client.get(f"/sessions/{sid}/status"), lambda r: r.json()["qr"], 30)
    body = {"phone": new_phone(), "displayName": "Keys"}
    assert (await client.post(f"/simulator/sessions/{sid}/scan", json=body)).status_code == 200
    await eventually(
        lambda: client.get(f"/sessions/{sid}/status"), lambda r: r.json()["status"] == "connected", 30
    )
    return sid


async def test_linking_a_number_by_keyboard(stack: Stack, chromium: Browser) -> None:
    user = new_user()
    async with console_page(chromium, stack) as console:
        page = console.page
        await sign_in_by_keyboard(console, user, "settings")
        # The skip link is the first stop, shows itself, and moves focus without losing the screen.
        await page.reload()  # a fresh page: the first Tab is the skip link
        await expect(page.locator('article[data-slot="1"]')).to_be_visible()
        console.clean()  # the requests the reload cut short
        await page.keyboard.press("Tab")
        assert await focused(page, "a.skip")
        box = await page.locator("a.skip").bounding_box()
        assert box is not None and box["x"] >= 0
        await page.keyboard.press("Enter")
        assert await focused(page, "main") and page.url.endswith("#/settings")
        # Focus is visible on the green header.
        await tab_to(page, "#nav a", back=True)
        assert await outline(page, "#nav a:focus") == ("solid", "rgb(255, 255, 255)")
        await no_axe(console, "settings")
        await tab_to(page, 'article[data-slot="1"] button')
        await page.keyboard.press("Enter")
        dialog = page.get_by_role("dialog")
        # The session is created first (seconds on a loaded node); the button says so meanwhile.
        await expect(dialog).to_be_visible(timeout=20_000)
        await expect(page.locator("img.qr")).to_be_visible(timeout=20_000)
        await no_axe(console, "the connect dialog")
        # The countdown is shown, not announced every second.
        assert await page.locator(".countdown").get_attribute("aria-live") == "off"
        await page.keyboard.press("Escape")
        await expect(dialog).to_be_hidden()
        # Back on the card that opened it (redrawn meanwhile: its stand-in).
        await page.wait_for_timeout(600)
        assert await focused(page, 'article[data-slot="1"] button'), "focus did not return to the card"
        console.assert_clean()


async def test_reading_and_answering_a_chat_by_keyboard(stack: Stack, chromium: Browser) -> None:
    user = new_user()
    async with stack.client(user) as client, console_page(chromium, stack, "phone") as console:
        sid = await linked(client, 1)
        for n, sender in enumerate(("+15550003001", "+15550003002", "+15550003003")):
            body = {"from": sender, "text": f"question {n}"}
            assert (await client.post(f"/simulator/sessions/{sid}/incoming", json=body)).status_code == 200
        page = console.page
        await sign_in_by_keyboard(console, user, "messages")
        items = page.locator("button.chat-item")
        await expect(items).to_have_count(5)  # 3 questions and the pairing's 2 history chats
        await no_axe(console, "the chat list")
        # One Tab stop for the list: in on the first chat, out past the last without visiting the rest.
        await tab_to(page, "button.chat-item")
        first = await page.evaluate("document.activeElement.dataset.chat")
        await page.keyboard.press("Tab")
        assert not await focused(page, "button.chat-item"), "each chat is its own Tab stop"
        await page.keyboard.press("Shift+Tab")
        await page.keyboard.press("ArrowDown")
        second = await page.evaluate("document.activeElement.dataset.chat")
        assert second != first
        await page.keyboard.press("Enter")
        composer = page.get_by_role("textbox", name="Message")
        await expect(composer).to_be_visible()
        await no_axe(console, "an open chat")
        # Attach shows its focus although the file input itself is hidden.
        await tab_to(page, 'input[type="file"]', back=True)
        assert (await outline(page, "label.button.icon"))[0] == "solid"
        await tab_to(page, "textarea")
        await page.keyboard.type("answered by keyboard")
        await page.keyboard.press("Enter")
        await expect(page.locator("ol.thread")).to_contain_text("answered by keyboard", timeout=15_000)
        # "‹ Chats" returns to the list, on the chat that was open.
        await tab_to(page, "button.back", back=True)
        await page.keyboard.press("Enter")
        assert await page.evaluate("document.activeElement.dataset.chat") == second
        console.assert_clean()


async def test_disconnecting_a_number_by_keyboard(stack: Stack, chromium: Browser) -> None:
    user = new_user()
    async with stack.client(user) as client, console_page(chromium, stack) as console:
        await linked(client, 2)
        page = console.page
        await sign_in_by_keyboard(console, user, "settings")
        card = page.locator('article[data-slot="2"]')
        await expect(card).to_contain_text("Connected")
        await tab_to(page, 'article[data-slot="2"] button.danger')
        await page.keyboard.press("Enter")
        dialog = page.get_by_role("dialog")
        await expect(dialog).to_contain_text("Disconnect")
        await no_axe(console, "the confirm dialog")
        await tab_to(page, '[role="dialog"] button.danger')
        await page.keyboard.press("Enter")
        await expect(card).to_contain_text("No number linked.")
        await page.wait_for_timeout(600)
        assert await focused(page, 'article[data-slot="2"] button'), "focus did not return to the card"
        await no_axe(console, "settings after disconnecting")
        console.assert_clean()
