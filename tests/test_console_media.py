"""Pictures and files in a chat, in Chromium against a real bridge (issue 25).

A file is previewed with an explicit caption field before it is sent (only after Send; Cancel sends
nothing); a received picture is a thumbnail that opens full size in a dialog (focus returns to the
thumbnail), and a picture the browser cannot decode (HEIC) is offered as a download instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect

from actors.clients.simulated.content import png
from tests.apikit import Stack, api_stack, new_user
from tests.consolekit import axe_violations, console_page, low_contrast
from tests.raykit import eventually, local_ray
from tests.threadkit import chat_item, connected, incoming, sent

pytestmark = [pytest.mark.ray, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def stack(postgres_server: str, redis_server: str) -> Iterator[Stack]:
    with local_ray(), api_stack(postgres_server, redis_server) as running:
        yield running


async def test_a_file_is_previewed_with_its_caption_and_sent_only_after_send(
    stack: Stack, chromium: Browser, shots: Path
) -> None:
    user, contact, jid = new_user(), "+15550007301", "15550007301@s.whatsapp.net"
    photo = {"name": "shelf.png", "mimeType": "image/png", "buffer": png("shelf", 640, 400)}
    async with stack.client(user) as client, console_page(chromium, stack) as console:
        sid, _ = await connected(client, 1, "Shop")
        await incoming(client, sid, contact, text="Can I see the shelf?", pushName="Lee")
        page = console.page
        await console.sign_in(user, "messages")
        await chat_item(console, jid).click()
        box = page.get_by_role("textbox", name="Message")
        await box.fill("Our new shelf")
        upload = page.locator('input[type="file"]')
        await upload.set_input_files(files=[photo])
        dialog = page.get_by_role("dialog", name="Send a file")
        caption = dialog.get_by_label("Caption")
        await expect(caption).to_be_focused()
        await expect(caption).to_have_value("Our new shelf")  # what was typed, to keep or change
        preview = dialog.get_by_role("img", name="Preview of shelf.png")
        await expect(preview).to_be_visible()
        assert await preview.evaluate("(img) => img.naturalWidth") == 640
        await expect(dialog).to_contain_text("shelf.png")
        assert await axe_violations(page) == []
        await console.shoot_both(shots, "messages-attach-{w}")
        await dialog.get_by_role("button", name="Cancel").click()
        await expect(dialog).to_be_hidden()
        await asyncio.sleep(1.5)
        assert await sent(client, sid) == [], "Cancel sent nothing"
        await expect(box).to_have_value("Our new shelf")

        await upload.set_input_files(files=[photo])
        await expect(caption).to_have_value("Our new shelf")
        await caption.press("Enter")
        await expect(dialog).to_be_hidden()
        first = (await eventually(lambda: sent(client, sid), lambda items: len(items) == 1))[0]
        assert (first["type"], first["fileName"], first["caption"]) == ("image", "shelf.png", "Our new shelf")
        await expect(box).to_have_value("")  # the words went out as the caption

        # A file with no words typed: the caption is written in the preview, Escape closes nothing sent.
        invoice = {"name": "invoice.pdf", "mimeType": "application/pdf", "buffer": b"%PDF-1.4 invoice"}
        await upload.set_input_files(files=[invoice])
        await expect(caption).to_have_value("")
        await expect(dialog.locator(".attach-file")).to_contain_text("invoice.pdf")
        await page.keyboard.press("Escape")
        await expect(dialog).to_be_hidden()
        await upload.set_input_files(files=[invoice])
        await caption.fill("The invoice")
        await console.shoot_both(shots, "messages-attach-document-{w}")
        await page.set_viewport_size({"width": 375, "height": 740})
        assert await low_contrast(page) == []
        await dialog.get_by_role("button", name="Send").click()
        second = (await eventually(lambda: sent(client, sid), lambda items: len(items) == 2))[1]
        assert (second["type"], second["fileName"], second["caption"]) == (
            "document",
            "invoice.pdf",
            "The invoice",
        )
        console.assert_clean()


async def test_pictures_open_full_size_and_undecodable_ones_download(
    stack: Stack, chromium: Browser, shots: Path
) -> None:
    user, contact, jid = new_user(), "+15550007401", "15550007401@s.whatsapp.net"
    async with stack.client(user) as client, console_page(chromium, stack) as console:
        sid, _ = await connected(client, 1, "Shop")
        shelf = {"type": "image", "mimetype": "image/png", "fileName": "shelf.png", "size": 4096}
        heic = {"type": "image", "mimetype": "image/heic", "fileName": "IMG_0042.HEIC", "size": 3000}
        await incoming(client, sid, contact, media=shelf, pushName="Lee")
        await incoming(client, sid, contact, media=heic, pushName="Lee")
        page = console.page
        await console.sign_in(user, "messages")
        await chat_item(console, jid).click()
        thumb = page.get_by_role("button", name="Open shelf.png full size")
        await expect(thumb).to_be_enabled()
        await thumb.focus()
        await page.keyboard.press("Enter")
        viewer = page.get_by_role("dialog", name="shelf.png")
        full = viewer.get_by_role("img", name="shelf.png")
        await expect(full).to_be_visible()
        assert await full.evaluate("(img) => img.naturalWidth") == 480, "the picture at its own size"
        await expect(viewer.get_by_role("link", name="Download shelf.png")).to_be_visible()
        assert await axe_violations(page) == []
        await console.shoot_both(shots, "messages-viewer-{w}")
        await page.keyboard.press("Escape")
        await expect(viewer).to_be_hidden()
        await expect(thumb).to_be_focused()

        # HEIC (an iPhone's photos): Chromium cannot show it, so it is a download, not a broken image.
        heic_bubble = page.locator('li.bubble[data-type="image"]').filter(has_text="IMG_0042.HEIC")
        await expect(heic_bubble).to_contain_text("This browser cannot show this picture.")
        await expect(heic_bubble.locator("img")).to_have_count(0)
        async with page.expect_download() as waiting:
            await heic_bubble.get_by_role("button", name="Download IMG_0042.HEIC (3 KB)").click()
        download = await waiting.value
        assert download.suggested_filename == "IMG_0042.HEIC"
        saved = await download.path()
        assert len(await asyncio.to_thread(saved.read_bytes)) == 3000
        assert await axe_violations(page) == []
        await page.set_viewport_size({"width": 375, "height": 740})
        await thumb.click()
        await expect(viewer).to_be_visible()
        await console.shoot(shots, "messages-viewer-375")
        await viewer.get_by_role("button", name="Close").click()
        await expect(thumb).to_be_focused()
        console.assert_clean()
