"""The console's live updates, in Chromium against a real bridge: a dropped socket, Redis down, the
WebSocket token's renewal, a refused key, and the bridge itself going away and coming back (issue 25,
defects 4, 5, 6).

Tokens live 10 s here, so a renewal happens every few seconds; the bridge restart test serves its own
API on a fixed port, stops it and starts a new one there, as a restarted bridge would be.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Iterator, Sized
from pathlib import Path

import pytest
from playwright.async_api import Browser, WebSocketRoute, expect

from api.app import create_app
from api.localstack import EmbeddedValkey, free_port
from tests.apikit import ServerThread, Stack, api_stack, new_user
from tests.consolekit import axe_violations, console_page, new_phone
from tests.raykit import eventually, local_ray

pytestmark = [pytest.mark.ray, pytest.mark.timeout(150)]

TOKEN_TTL_S = 10


@pytest.fixture(scope="module")
def valkey(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedValkey]:
    """This module's own Redis: the outage test stops it."""
    with EmbeddedValkey(tmp_path_factory.mktemp("valkey")) as server:
        yield server


@pytest.fixture(scope="module")
def stack(postgres_server: str, valkey: EmbeddedValkey) -> Iterator[Stack]:
    with local_ray(), api_stack(postgres_server, valkey.url, ws_token_ttl_s=TOKEN_TTL_S) as running:
        yield running


def fixed_port_api(stack: Stack, port: int) -> ServerThread:
    """An API of the stack's bridge on a port of our choosing, to stop and start again there."""
    return ServerThread(create_app(stack.settings), port).__enter__()


LIVE_TEXTS = """() => {
  window.liveTexts = [];
  const el = document.getElementById("live");
  new MutationObserver(() => window.liveTexts.push(el.textContent))
    .observe(el, { childList: true, characterData: true, subtree: true });
}"""


async def test_the_token_is_renewed_before_it_expires_without_a_word(stack: Stack, chromium: Browser) -> None:
    user = new_user()
    async with stack.client(user) as client, console_page(chromium, stack) as console:
        sid = (await client.post("/sessions", json={"slot": 1})).json()["id"]
        await eventually(lambda: client.get(f"/sessions/{sid}/status"), lambda r: r.json()["qr"], 30)
        body = {"phone": new_phone(), "displayName": "Renewed"}
        assert (await client.post(f"/simulator/sessions/{sid}/scan", json=body)).status_code == 200
        await console.sign_in(user, "messages")
        live = console.page.locator("#live")
        await expect(live).to_have_text("Live")
        await console.page.evaluate(LIVE_TEXTS)
        await console.page.wait_for_timeout(TOKEN_TTL_S * 2500)  # two expiries and a half
        said: list[str] = await console.page.evaluate("window.liveTexts")
        assert said == [], f"the header said {said} while the token was renewed"
        # Still live: a message sent now appears without a reload.
        got = await client.post(
            f"/simulator/sessions/{sid}/incoming", json={"from": "+15550007777", "text": "still live"}
        )
        assert got.status_code == 200
        await expect(console.page.locator("button.chat-item").first).to_contain_text("still live")
        console.assert_clean()


async def test_a_refused_key_signs_out_instead_of_retrying(stack: Stack, chromium: Browser) -> None:
    user = new_user()
    async with console_page(chromium, stack) as console:
        await console.sign_in(user, "settings")
        await expect(console.page.locator("#live")).to_have_text("Live")
        # The key is rotated on the bridge (here: this tab holds a wrong one) and the page reloads.
        await console.page.evaluate("sessionStorage.setItem('bridge.apiKey', 'rotated-away')")
        await console.page.reload()
        await expect(console.page.get_by_label("API key")).to_be_visible(timeout=10_000)
        await expect(console.page.locator(".signin .error")).to_contain_text("The API key was refused")
        assert await axe_violations(console.page) == []
        await expect(console.page.locator("#live")).to_have_text("")
        _, failed = console.clean()
        await console.page.wait_for_timeout(4000)
        _, more = console.clean()
        assert failed and all(": 401" in f for f in failed), failed
        assert more == [], f"still asking after signing out: {more}"


async def test_the_bridge_going_away_is_shown_and_its_return_noticed_within_seconds(
    stack: Stack, chromium: Browser, shots: Path
) -> None:
    user, port = new_user(), free_port()
    own = dataclasses.replace(stack, base_url=f"http://127.0.0.1:{port}", ws_url=f"ws://127.0.0.1:{port}/ws")
    async with stack.client(user) as client, console_page(chromium, own) as console:
        sid = (await client.post("/sessions", json={"slot": 1})).json()["id"]
        await eventually(lambda: client.get(f"/sessions/{sid}/status"), lambda r: r.json()["qr"], 30)
        body = {"phone": new_phone(), "displayName": "Restart"}
        assert (await client.post(f"/simulator/sessions/{sid}/scan", json=body)).status_code == 200
        api = fixed_port_api(stack, port)
        try:
            await console.sign_in(user, "settings")
            card = console.page.locator('article[data-slot="1"]')
            await expect(card).to_contain_text("Connected")
            await expect(console.page.locator("#live")).to_have_text("Live")
            api.__exit__()
            down = console.page.locator(".bridge-down")
            await expect(down).to_be_visible(timeout=15_000)
            await expect(down).to_contain_text("The bridge is not answering")
            await expect(card).to_contain_text("Unknown: the bridge is not answering")
            await expect(card).not_to_contain_text("Connected")
            await expect(console.page.get_by_role("button", name="Retry now").first).to_be_visible()
            await console.shoot(shots, "settings-bridge-down-1280")
            await console.page.set_viewport_size({"width": 375, "height": 740})
            await console.shoot(shots, "settings-bridge-down-375")
            await console.page.set_viewport_size({"width": 1280, "height": 800})
            api = fixed_port_api(stack, port)
            back = time.monotonic()
            await expect(console.page.locator("#live")).to_have_text("Live", timeout=10_000)
            await expect(down).to_be_hidden()
            await expect(card).to_contain_text("Connected")
            noticed = time.monotonic() - back
            assert noticed < 8, f"the tab noticed the bridge back after {noticed:.1f} s"
            console.clean()  # the requests refused while it was away
            await console.page.wait_for_timeout(1000)
            console.assert_clean()
        finally:
            api.__exit__()


async def _count(items: Sized) -> int:
    return len(items)


# What the header shows and what a screen reader hears of it (aria-hidden left out), at each change.
HEARD = """() => {
  window.heard = [];
  window.seen = [];
  const el = document.getElementById("live");
  new MutationObserver(() => {
    const copy = el.cloneNode(true);
    copy.querySelectorAll('[aria-hidden="true"]').forEach((node) => node.remove());
    window.heard.push(copy.textContent.trim());
    window.seen.push(el.textContent.trim());
  }).observe(el, { childList: true, characterData: true, subtree: true });
}"""
COUNTDOWNS_SEEN = "new Set(window.seen.filter((text) => /\\(\\d+ s\\)/.test(text))).size"


async def test_a_dropped_socket_is_announced_status_is_polled_meanwhile_and_it_resumes(
    stack: Stack, chromium: Browser, shots: Path
) -> None:
    user = new_user()
    refuse = False
    opened: list[WebSocketRoute] = []
    cursors: list[str] = []  # of the frames the server sent the page

    def forward(route: WebSocketRoute, message: str | bytes) -> None:
        if isinstance(message, str) and '"cursor"' in message:
            cursors.append(message)
        route.send(message)

    async def socket(route: WebSocketRoute) -> None:
        opened.append(route)
        if refuse:
            await route.close(code=1013, reason="try again later")
        else:
            route.connect_to_server().on_message(lambda message: forward(route, message))

    async with stack.client(user) as client, console_page(chromium, stack) as console:
        sid = (await client.post("/sessions", json={"slot": 1})).json()["id"]
        await console.page.route_web_socket(re.compile(r"/ws\?"), socket)
        await console.sign_in(user, "settings")
        live = console.page.locator("#live")
        await expect(live).to_have_text("Live")
        await eventually(lambda: _count(cursors), lambda n: n > 0)  # a live frame with a cursor reached it
        refuse = True
        await opened[-1].close(code=1001, reason="going away")
        await expect(live).to_contain_text("Live updates lost. Reconnecting…")
        # The seconds to the next try count down on screen, but are not in the live region's words: a
        # screen reader is told once, not every second.
        await expect(live.locator('[aria-hidden="true"]')).to_have_text(re.compile(r"^\(\d+ s\)$"))
        await console.page.evaluate(HEARD)
        await eventually(lambda: console.page.evaluate(COUNTDOWNS_SEEN), lambda n: n >= 3, timeout=30)
        heard: list[str] = await console.page.evaluate("window.heard")
        assert heard and not [said for said in heard if re.search(r"\d", said)], heard
        await expect(live).to_contain_text("Reconnecting…")
        await console.shoot_both(shots, "live-reconnecting-{w}")
        # Meanwhile the card follows the session through GET /sessions/{id}/status.
        await eventually(lambda: client.get(f"/sessions/{sid}/status"), lambda r: r.json()["qr"])
        body = {"phone": new_phone(), "displayName": "Polled"}
        scanned = await client.post(f"/simulator/sessions/{sid}/scan", json=body)
        assert scanned.status_code == 200, scanned.text
        card = console.page.locator('article[data-slot="1"]')
        await expect(card).to_have_attribute("data-state", "connected", timeout=15_000)
        await eventually(lambda: _count(opened), lambda n: n >= 3, timeout=30)  # it kept retrying
        refuse = False
        await expect(live).to_have_text("Live", timeout=45_000)
        assert "cursor=" in opened[-1].url, "the new socket resumes after the last frame seen"
        console.assert_clean()


async def test_with_redis_down_the_console_says_so_and_follows_status_by_polling(
    stack: Stack, chromium: Browser, valkey: EmbeddedValkey
) -> None:
    user = new_user()
    async with stack.client(user) as client, console_page(chromium, stack) as console:
        await console.sign_in(user, "settings")
        live = console.page.locator("#live")
        await expect(live).to_have_text("Live")
        valkey.stop()
        try:
            await expect(live).to_have_text(
                "Live updates are paused (Redis is down); checking status every 3 s.", timeout=15_000
            )
            # A number linked during the outage: its card appears and follows it without Redis.
            sid = (await client.post("/sessions", json={"slot": 1})).json()["id"]
            await eventually(lambda: client.get(f"/sessions/{sid}/status"), lambda r: r.json()["qr"])
            body = {"phone": new_phone(), "displayName": "No Redis"}
            assert (await client.post(f"/simulator/sessions/{sid}/scan", json=body)).status_code == 200
            card = console.page.locator('article[data-slot="1"]')
            await expect(card).to_have_attribute("data-state", "connected", timeout=15_000)
            await expect(card).to_contain_text("No Redis")
            assert await axe_violations(console.page) == []
        finally:
            valkey.start()
        await expect(live).to_have_text("Live", timeout=15_000)
        console.assert_clean()
