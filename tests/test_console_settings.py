"""The console's Settings screen (the numbers' cards and the connect dialog), in Chromium against a
real bridge.

One bridge (simulated network, real PostgreSQL, Redis, Ray) and one browser for the module; each test
is its own user. The QR on screen is decoded from a screenshot and compared with the `qr` frames a
WebSocket of the test received meanwhile.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, Route, WebSocketRoute, expect

from tests.apikit import Stack, WsFrames, api_stack, new_user, websocket
from tests.consolekit import (
    ConsolePage,
    axe_violations,
    console_page,
    low_contrast,
    new_phone,
    read_qr,
    shown_phone,
    unnamed_controls,
)
from tests.raykit import eventually, local_ray

pytestmark = [pytest.mark.ray, pytest.mark.timeout(120)]

# First code 3 s, then 2 s each, 4 codes: a round ends ~11 s after it starts (the last code's 2 s of
# grace), and two rounds are all.
TIMINGS = {"qr_first_s": 3.0, "qr_next_s": 2.0, "qr_codes": 4, "qr_max_rounds": 2}


@pytest.fixture(scope="module")
def stack(postgres_server: str, redis_server: str) -> Iterator[Stack]:
    with local_ray(), api_stack(postgres_server, redis_server, session=TIMINGS) as running:
        yield running


async def qr_on_screen(page: Page) -> str:
    png = await page.locator("img.qr").screenshot()
    texts = read_qr(png)
    assert len(texts) == 1, f"no QR code readable on screen ({len(texts)} found)"
    return texts[0]


async def current_qr_shown(page: Page, frames: WsFrames, session_id: str) -> str:
    """The QR on screen once it is the payload of the latest `qr` frame (the page re-renders on each)."""

    async def probe() -> tuple[str, str | None]:
        latest = frames.of("qr", session_id)
        return await qr_on_screen(page), latest[-1]["qr"] if latest else None

    shown, _ = await eventually(probe, lambda pair: pair[0] == pair[1], timeout=10, every=0.1)
    return shown


async def connect_slot(console: ConsolePage, slot: int) -> str:
    """Click Connect on a slot's card; the id of the session the modal links."""
    card = console.page.locator(f'article[data-slot="{slot}"]')
    await card.get_by_role("button", name="Connect").click()
    dialog = console.page.get_by_role("dialog")
    await expect(dialog).to_be_visible()
    session_id = await dialog.get_attribute("data-session-id")
    assert session_id
    return session_id


# --- Settings → Integrations → WhatsApp Inbox -------------------------------------------------------------


async def test_connect_by_qr_the_code_on_screen_rotates_and_a_scan_closes_the_modal(
    stack: Stack, chromium: Browser, shots: Path
) -> None:
    user = new_user()
    phone = new_phone()
    async with console_page(chromium, stack) as console, websocket(stack, user) as frames:
        await console.sign_in(user, "settings")
        await expect(console.page.locator("article.card")).to_have_count(3)
        await console.shoot_both(shots, "settings-empty-{w}")
        sid = await connect_slot(console, 1)
        first = await current_qr_shown(console.page, frames, sid)
        # Two rounds at most here: the countdown says one more follows this one.
        await expect(console.page.locator(".countdown")).to_have_text(
            re.compile(r"This code changes in \d+ s\. 1 more round of codes after this one\.")
        )
        assert await axe_violations(console.page) == []
        await console.shoot_both(shots, "connect-qr-{w}")
        assert await low_contrast(console.page) == []
        # The next code replaces it on screen.
        second = await eventually(
            lambda: current_qr_shown(console.page, frames, sid), lambda shown: shown != first, timeout=10
        )
        assert second == frames.of("qr", sid)[-1]["qr"]
        async with stack.client() as sim:
            body = {"phone": phone, "displayName": "Ana Lima"}
            assert (await sim.post(f"/simulator/sessions/{sid}/scan", json=body)).status_code == 200
        await expect(console.page.get_by_role("dialog")).to_have_count(0)
        card = console.page.locator('article[data-slot="1"]')
        await expect(card).to_have_attribute("data-state", "connected")
        await expect(card).to_contain_text("Ana Lima")
        await expect(card).to_contain_text(shown_phone(phone))
        await console.shoot_both(shots, "settings-connected-{w}")
        assert await low_contrast(console.page) == []
        console.assert_clean()


async def test_round_end_offers_retry_then_a_pairing_code_the_network_accepts(
    stack: Stack, chromium: Browser
) -> None:
    user = new_user()
    phone = new_phone()
    async with console_page(chromium, stack) as console, stack.client(user) as client:
        await console.sign_in(user, "settings")
        sid = await connect_slot(console, 2)
        await expect(console.page.locator("img.qr")).to_be_visible(timeout=15_000)
        # The second round says it is the last; after it, the dialog offers to start again.
        await expect(console.page.locator(".countdown")).to_have_text(
            re.compile(r"This code changes in \d+ s\. This is the last round of codes\."), timeout=30_000
        )
        retry = console.page.get_by_role("button", name="Try again")
        await expect(retry).to_be_visible(timeout=30_000)
        await expect(console.page.get_by_role("dialog")).to_contain_text("expired before one was scanned")
        assert await axe_violations(console.page) == []
        await expect(console.page.locator("img.qr")).to_be_hidden()
        await retry.click()
        await expect(console.page.locator("img.qr")).to_be_visible(timeout=15_000)
        # Tab 2: a pairing code for the phone, grouped as the phone shows it.
        assert await unnamed_controls(console.page) == []
        await console.page.get_by_role("tab", name="Phone number").click()
        assert await unnamed_controls(console.page) == []
        await console.page.get_by_label("Country code").select_option(label="United States (+1)")
        await console.page.get_by_label("Phone number of the WhatsApp account").fill(phone[2:])
        await console.page.get_by_role("button", name="Get pairing code").click()
        shown = await console.page.locator(".pairing .code").text_content()
        assert shown is not None and re.fullmatch(r"[A-Z0-9]{4}-[A-Z0-9]{4}", shown), shown
        assert await axe_violations(console.page) == []
        status = (await client.get(f"/sessions/{sid}/status")).json()
        assert status["pairingCode"] == shown.replace("-", "")
        scanned = await client.post(f"/simulator/sessions/{sid}/scan", json={"phone": phone})
        assert scanned.status_code == 200, scanned.text
        await expect(console.page.get_by_role("dialog")).to_have_count(0)
        await expect(console.page.locator('article[data-slot="2"]')).to_have_attribute(
            "data-state", "connected"
        )
        console.assert_clean()


async def test_an_expired_code_stays_dimmed_until_the_next_one(
    stack: Stack, chromium: Browser, shots: Path
) -> None:
    user = new_user()
    held = False  # the page hears nothing meanwhile: its code expires with no next one in sight
    sockets: list[WebSocketRoute] = []
    later: list[str | bytes] = []

    def forward(route: WebSocketRoute, message: str | bytes) -> None:
        if held:
            later.append(message)
        else:
            route.send(message)

    async def socket(route: WebSocketRoute) -> None:
        sockets.append(route)
        route.connect_to_server().on_message(lambda message: forward(route, message))

    async with console_page(chromium, stack) as console:
        page = console.page
        await page.route_web_socket(re.compile(r"/ws\?"), socket)
        await console.sign_in(user, "settings")
        await connect_slot(console, 1)
        qr = page.locator("img.qr")
        await expect(qr).to_be_visible(timeout=15_000)
        countdown = page.locator(".countdown")
        await expect(countdown).to_contain_text("1 more round of codes after this one.")  # from a frame
        held = True
        await expect(countdown).to_have_text(
            "A new code is on its way… 1 more round of codes after this one.", timeout=15_000
        )
        # No blank square: the last code is still there, dimmed.
        await expect(qr).to_be_visible()
        await expect(qr).to_have_class(re.compile(r"\bstale\b"))
        assert await qr.evaluate("(el) => getComputedStyle(el).opacity") == "0.35"
        await console.shoot_both(shots, "connect-qr-expired-{w}")
        held = False
        for message in later:
            sockets[-1].send(message)
        # The next code replaces it at full strength (or, if the pairing ran out meanwhile, Try again
        # brings one).
        fresh = page.locator("img.qr:not(.stale)")
        retry = page.get_by_role("button", name="Try again")
        await expect(fresh.or_(retry)).to_be_visible(timeout=30_000)
        if await retry.is_visible():
            await retry.click()
        await expect(fresh).to_be_visible(timeout=30_000)
        console.assert_clean()


async def test_the_pairing_tab_is_prefilled_with_the_number_given_at_onboarding(
    stack: Stack, chromium: Browser, shots: Path
) -> None:
    user = new_user()
    async with console_page(chromium, stack) as console, stack.client(user) as client:
        saved = await client.put("/users/me/whatsapp-phone", json={"phone": "+49 30 1234567"})
        assert saved.status_code == 200 and saved.json()["phone"] == "+49301234567", saved.text
        await console.sign_in(user, "settings")
        await connect_slot(console, 1)  # a slot never linked before: no earlier phone to offer
        dialog = console.page.get_by_role("dialog")
        await dialog.get_by_role("tab", name="Phone number").click()
        await expect(dialog.get_by_label("Country code")).to_have_value("DE")
        number = dialog.get_by_role("textbox", name="Phone number of the WhatsApp account")
        await expect(number).to_have_value("301234567")
        await console.shoot_both(shots, "connect-pairing-prefilled-{w}")
        console.assert_clean()


INSIDE_DIALOG = "document.querySelector('[role=dialog]').contains(document.activeElement)"


async def test_the_modal_is_a_keyboard_dialog(stack: Stack, chromium: Browser) -> None:
    user = new_user()
    async with console_page(chromium, stack) as console:
        await console.sign_in(user, "settings")
        await connect_slot(console, 3)
        dialog = console.page.get_by_role("dialog")
        await expect(console.page.locator("img.qr")).to_be_visible(timeout=15_000)
        assert await axe_violations(console.page) == []
        for _ in range(12):  # Tab never leaves the dialog
            await console.page.keyboard.press("Tab")
            inside = await console.page.evaluate(
                "document.querySelector('[role=dialog]').contains(document.activeElement)"
            )
            assert inside
        await console.page.keyboard.press("Escape")
        await expect(dialog).to_have_count(0)
        # Closed, not cancelled: the slot still links, and the QR can be shown again.
        card = console.page.locator('article[data-slot="3"]')
        await card.get_by_role("button", name="Show QR code").click()
        await expect(console.page.locator("img.qr")).to_be_visible(timeout=15_000)
        console.assert_clean()


async def test_a_fourth_number_is_blocked_and_the_api_refusal_is_shown_in_words(
    stack: Stack, chromium: Browser, shots: Path
) -> None:
    user = new_user()
    held = False  # the server's frames are held back from the page: its view of the slots is stale

    def forward(route: WebSocketRoute, message: str | bytes) -> None:
        if not held:
            route.send(message)

    async def socket(route: WebSocketRoute) -> None:
        route.connect_to_server().on_message(lambda message: forward(route, message))

    async with console_page(chromium, stack) as console, stack.client(user) as client:
        for slot in (1, 2):
            assert (await client.post("/sessions", json={"slot": slot})).status_code == 201
        await console.page.route_web_socket(re.compile(r"/ws\?"), socket)
        two = (await client.get("/sessions")).text

        async def listing(route: Route) -> None:
            # While held, a reload of the list (a reconnecting socket's resync, say) is as stale too.
            if held and route.request.method == "GET":
                await route.fulfill(status=200, content_type="application/json", body=two)
            else:
                await route.fallback()

        await console.page.route(re.compile(r"/sessions$"), listing)
        await console.sign_in(user, "settings")
        stale = console.page.locator('article[data-slot="3"]')
        await expect(stale.get_by_role("button", name="Connect")).to_be_visible()
        # Another tab took the last slot meanwhile (before this one heard of it): the click reaches the
        # API's 400.
        held = True
        assert (await client.post("/sessions", json={"slot": 3})).status_code == 201
        await stale.get_by_role("button", name="Connect").click()
        await expect(stale.get_by_role("alert")).to_have_text(re.compile("already have 3 WhatsApp numbers"))
        assert await axe_violations(console.page) == []
        _, failed = console.clean()
        assert [f for f in failed if "/sessions" in f and ": 400" in f], failed
        held = False
        await console.page.reload()
        await expect(console.page.locator("#live")).to_have_text("Live")
        await expect(console.page.locator('article[data-state="empty"]')).to_have_count(0)
        # Each card says where its pairing is, from the socket's status frames.
        await expect(console.page.locator('article[data-state="qr_ready"]')).to_have_count(3)
        blocked = console.page.get_by_role("button", name="Connect another number")
        await expect(blocked).to_be_disabled()
        await expect(console.page.locator("#slots-note")).to_contain_text("All 3 numbers are in use")
        await console.shoot_both(shots, "settings-full-{w}")
        console.assert_clean()


async def test_disconnect_asks_first_then_frees_the_slot(
    stack: Stack, chromium: Browser, shots: Path
) -> None:
    user = new_user()
    async with console_page(chromium, stack, "phone") as console, stack.client(user) as client:
        sid = (await client.post("/sessions", json={"slot": 1})).json()["id"]
        await eventually(lambda: client.get(f"/sessions/{sid}/status"), lambda r: r.json()["qr"])
        phone = new_phone()
        body = {"phone": phone, "displayName": "Shop"}
        assert (await client.post(f"/simulator/sessions/{sid}/scan", json=body)).status_code == 200
        await console.sign_in(user, "settings")
        card = console.page.locator('article[data-slot="1"]')
        await expect(card).to_have_attribute("data-state", "connected")
        await expect(console.page.locator("#live")).to_have_text("Live")
        # At 375 px the screens and "Sign out" share one row of the header.
        nav = await console.page.locator("#nav").bounding_box()
        sign_out = await console.page.locator("#signout").bounding_box()
        assert nav and sign_out and abs(nav["y"] - sign_out["y"]) < nav["height"], (nav, sign_out)
        assert nav["x"] + nav["width"] <= sign_out["x"] <= 375 - sign_out["width"]
        await console.shoot_both(shots, "settings-{w}")
        assert await low_contrast(console.page) == []
        # The same phone asked for in another slot: refused in words before the API's 409.
        await connect_slot(console, 2)
        await console.page.get_by_role("tab", name="Phone number").click()
        await console.page.get_by_label("Country code").select_option(label="United States (+1)")
        await console.page.get_by_label("Phone number of the WhatsApp account").fill(phone[2:])
        await console.shoot_both(shots, "connect-pairing-{w}")
        await console.page.get_by_role("button", name="Get pairing code").click()
        await expect(console.page.locator(".pair-form .error").first).to_have_text(
            f"{shown_phone(phone)} is already linked in slot 1. Disconnect it there first."
        )
        await console.page.keyboard.press("Escape")
        await card.get_by_role("button", name="Disconnect").click()
        confirm = console.page.get_by_role("dialog")
        await expect(confirm).to_contain_text(f"Disconnect {shown_phone(phone)}")
        assert await axe_violations(console.page) == []
        await confirm.get_by_role("button", name="Cancel").click()
        await expect(card).to_have_attribute("data-state", "connected")
        await card.get_by_role("button", name="Disconnect").click()
        await console.page.get_by_role("dialog").get_by_role("button", name="Disconnect").click()
        await expect(card).to_have_attribute("data-state", "empty", timeout=45_000)
        assert [s["slot"] for s in (await client.get("/sessions")).json()] == [2]
        console.assert_clean()


async def test_a_phone_another_number_holds_is_refused_in_words_and_a_new_round_follows(
    stack: Stack, chromium: Browser
) -> None:
    user = new_user()
    phone = new_phone()
    async with console_page(chromium, stack) as console, stack.client(user) as client:
        first = (await client.post("/sessions", json={"slot": 1})).json()["id"]
        await eventually(lambda: client.get(f"/sessions/{first}/status"), lambda r: r.json()["qr"])
        assert (
            await client.post(f"/simulator/sessions/{first}/scan", json={"phone": phone})
        ).status_code == 200
        await console.sign_in(user, "settings")
        await expect(console.page.locator('article[data-slot="1"]')).to_have_attribute(
            "data-state", "connected"
        )
        sid = await connect_slot(console, 2)
        await expect(console.page.locator("img.qr")).to_be_visible(timeout=15_000)
        # The same phone scans slot 2's QR: the scanner gets 409, the browser the words.
        scanned = await client.post(f"/simulator/sessions/{sid}/scan", json={"phone": phone})
        assert scanned.status_code == 409 and scanned.json()["error"]["code"] == "phone_already_paired"
        dialog = console.page.get_by_role("dialog")
        words = (
            "This phone is already linked to another number in this bridge."
            " Unlink it there first, then scan again."
        )
        await expect(dialog.get_by_role("alert").filter(has_text="already linked")).to_have_text(words)
        assert await axe_violations(console.page) == []
        # The session pairs afresh by itself: a new code shows, the words stay.
        await expect(console.page.locator("img.qr")).to_be_visible(timeout=15_000)
        await expect(dialog).to_contain_text(words)
        status = (await client.get(f"/sessions/{sid}/status")).json()
        assert (status["status"], status["reason"], status["phone"]) == ("qr_ready", None, None)
        console.assert_clean()
