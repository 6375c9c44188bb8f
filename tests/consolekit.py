"""Browser tests of the console: Chromium driven by Playwright, pages watched for errors.

`browser()` launches the Chromium that tests/system-tools.sh provisioned (`CHROMIUM_PATH`, else the
system's `chromium`, else Playwright's own build) with a fake microphone; `ConsolePage` records every
console error and failed request so a test can assert none happened; `read_qr` decodes a screenshot
with zxing-cpp.
"""

from __future__ import annotations

import os
import random
import shutil
import struct
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import phonenumbers
import pytest
import zxingcpp
from playwright.async_api import Browser, ConsoleMessage, Locator, Page, Request, Response, async_playwright

from tests.apikit import Stack

# None: Playwright's own build (what tests/system-tools.sh installs where the system has no Chromium).
CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium")
CHROMIUM_ARGS = [
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--disable-gpu",
]
WIDTHS = {"desktop": 1280, "phone": 375}
HEIGHT = {"desktop": 800, "phone": 740}


@asynccontextmanager
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        path = CHROMIUM or pw.chromium.executable_path
        if not os.path.exists(path):  # noqa: ASYNC240 (one stat before a browser starts)
            # The suite never skips: a machine without a browser fails here, saying what to run.
            pytest.fail(f"No Chromium at {path}: make test installs it (system-tools.sh)", pytrace=False)
        launched = await pw.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


@dataclass
class ConsolePage:
    """A page of the console, with what went wrong on it (console errors, failed requests)."""

    page: Page
    stack: Stack
    errors: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def watch(self) -> None:
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda err: self.errors.append(f"page error: {err}"))
        self.page.on("requestfailed", self._request_failed)
        self.page.on("response", self._response)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            self.errors.append(f"console {message.type}: {message.text}")

    def _request_failed(self, request: Request) -> None:
        # A media element that is replaced mid-load aborts its request; nothing a user sees.
        if request.failure != "net::ERR_ABORTED" or request.resource_type not in ("media", "image"):
            self.failed.append(f"{request.method} {request.url}: {request.failure}")

    def _response(self, response: Response) -> None:
        if response.status >= 400:
            self.failed.append(f"{response.request.method} {response.url}: {response.status}")

    def clean(self) -> tuple[list[str], list[str]]:
        """What went wrong so far, and forget it (a test that expects an error calls this after it)."""
        found = (self.errors[:], self.failed[:])
        self.errors.clear()
        self.failed.clear()
        return found

    def assert_clean(self) -> None:
        errors, failed = self.clean()
        assert not errors and not failed, (errors, failed)  # a console error's request is in `failed`

    async def sign_in(self, user: str, screen: str = "") -> None:
        await self.page.goto(self.stack.base_url + "/" + (f"#/{screen}" if screen else ""))
        await self.page.get_by_label("API key").fill(self.stack.api_key)
        await self.page.get_by_label("User id").fill(user)
        await self.page.get_by_role("button", name="Open").click()

    async def shoot(self, directory: Path, name: str) -> Path:
        """A screenshot of the page as it is, once axe finds nothing wrong with it: every state worth a
        picture is checked too."""
        found = await axe_violations(self.page)
        assert found == [], f"{name}: {found}"
        path = directory / f"{name}.png"
        await self.page.screenshot(path=str(path), full_page=False)
        return path

    async def shoot_both(self, directory: Path, name: str, show: Locator | None = None) -> None:
        """`shoot` at 1280 and at 375 px (`{w}` in `name` is the width), `show` scrolled into view at
        each, then back to the page's size: every state worth a picture is looked at on a desktop and
        on a phone."""
        was = self.page.viewport_size
        for width in ("desktop", "phone"):
            await self.page.set_viewport_size({"width": WIDTHS[width], "height": HEIGHT[width]})
            if show is not None:
                await show.scroll_into_view_if_needed()
            await self.shoot(directory, name.format(w=WIDTHS[width]))
        if was:
            await self.page.set_viewport_size(was)


# Controls a screen reader would announce without a name (no label, aria-label, text or title).
UNNAMED = """() => [...document.querySelectorAll("button, input, select, textarea, a[href]")]
    .filter((el) => el.offsetParent !== null || el.type === "file")
    .filter((el) => !((el.labels && el.labels.length) || el.getAttribute("aria-label")
        || el.getAttribute("aria-labelledby") || el.textContent.trim() || el.title))
    .map((el) => el.outerHTML.slice(0, 120))"""


async def unnamed_controls(page: Page) -> list[str]:
    found: list[str] = await page.evaluate(UNNAMED)
    return found


# Visible text below WCAG AA contrast against the first opaque background behind it (4.5:1, or 3:1 for
# large text); disabled controls are exempt, as in WCAG.
LOW_CONTRAST = """() => {
  const rgb = (value) => (value.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => [r, g, b]
    .map((c) => c / 255)
    .map((c) => (c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4))
    .reduce((sum, c, i) => sum + c * [0.2126, 0.7152, 0.0722][i], 0);
  const background = (el) => {
    for (let node = el; node; node = node.parentElement) {
      const parts = rgb(getComputedStyle(node).backgroundColor);
      if (parts.length && (parts.length < 4 || parts[3] >= 0.5)) return parts.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const found = [];
  for (const el of document.querySelectorAll("body *")) {
    const text = [...el.childNodes].filter((n) => n.nodeType === 3).map((n) => n.textContent).join("").trim();
    if (!text || el.offsetParent === null || el.closest("[disabled], .visually-hidden")) continue;
    const style = getComputedStyle(el);
    const fg = lum(rgb(style.color));
    const bg = lum(background(el));
    const ratio = (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
    const size = parseFloat(style.fontSize);
    const large = size >= 24 || (size >= 18.66 && Number(style.fontWeight) >= 700);
    if (ratio < (large ? 3 : 4.5)) found.push(`${text.slice(0, 40)}: ${ratio.toFixed(2)}`);
  }
  return found;
}"""


async def axe_violations(page: Page) -> list[str]:
    """What axe-core finds wrong on the page as it is now (WCAG 2.1 A and AA rules), one line each.

    axe is evaluated through the DevTools protocol, as a browser extension would be: the page's own
    Content-Security-Policy stays as strict as it is.
    """
    from axe_playwright_python.async_playwright import Axe

    options = {"resultTypes": ["violations"], "runOnly": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}
    results = await Axe().run(page, options=options)
    return [
        f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']][:3]}"
        for v in results.response["violations"]
    ]


async def low_contrast(page: Page) -> list[str]:
    found: list[str] = await page.evaluate(LOW_CONTRAST)
    return found


@asynccontextmanager
async def console_page(browser: Browser, stack: Stack, width: str = "desktop") -> AsyncIterator[ConsolePage]:
    context = await browser.new_context(
        viewport={"width": WIDTHS[width], "height": HEIGHT[width]},
        permissions=["microphone"],
        accept_downloads=True,
    )
    page = await context.new_page()
    page.set_default_timeout(15_000)
    watched = ConsolePage(page, stack)
    watched.watch()
    try:
        yield watched
    finally:
        await context.close()


def artifacts_dir(base: Path) -> Path:
    """Where screenshots go: CONSOLE_SCREENSHOTS if set (e.g. docs/screenshots), else under pytest's tmp."""
    chosen = os.environ.get("CONSOLE_SCREENSHOTS")
    path = Path(chosen) if chosen else base / "console-screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path


# --- PNG → grey pixels → QR text --------------------------------------------------------------------------


def _png_grey(png: bytes) -> tuple[int, int, bytes]:
    """Width, height and one grey byte per pixel of an 8-bit RGB(A) or grey PNG (what Chromium writes)."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, width, height, channels = 8, bytearray(), 0, 0, 0
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind, data = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", data)
            assert depth == 8 and interlace == 0, "only 8-bit non-interlaced PNGs"
            channels = {0: 1, 2: 3, 4: 2, 6: 4}[color]
        elif kind == b"IDAT":
            idat += data
    raw = zlib.decompress(bytes(idat))
    stride = width * channels
    prev = bytearray(stride)
    grey = bytearray()
    for row in range(height):
        start = row * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up = prev[i]
            corner = prev[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                pred = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                line[i] = (line[i] + pred) & 0xFF
        grey += (
            line[::channels]
            if channels < 3
            else bytes(
                (line[i] * 30 + line[i + 1] * 59 + line[i + 2] * 11) // 100
                for i in range(0, stride, channels)
            )
        )
        prev = line
    return width, height, bytes(grey)


def read_qr(png: bytes) -> list[str]:
    """The texts of the QR codes in a screenshot."""
    width, height, grey = _png_grey(png)
    image = memoryview(grey).cast("B", (height, width))
    return [found.text for found in zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode)]


def new_phone() -> str:
    """A phone number no other test of the run is likely to hold."""
    return f"+1415555{random.randint(1000, 9999)}"


def shown_phone(phone: str) -> str:
    """A number as the console shows it: phonenumbers' international format, kept on one line (no-break
    spaces and hyphens)."""
    number = phonenumbers.parse(phone, None)
    text = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    return text.replace(" ", "\u00a0").replace("-", "\u2011")
