"""The console's sign-in and Onboarding screens, and phone numbers everywhere, in Chromium against a
real bridge.

Numbers are formatted and checked in the browser with `phonenumbers`' own metadata (served as
/console/assets/phone_meta.js): the page must write every region's example numbers exactly as the
library does, list every region in the picker, and take a pasted number with its own country code.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import phonenumbers
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
from tests.raykit import local_ray

pytestmark = [pytest.mark.ray, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def stack(postgres_server: str, redis_server: str) -> Iterator[Stack]:
    with local_ray(), api_stack(postgres_server, redis_server) as running:
        yield running


def example_numbers() -> list[str]:
    """Each region's example fixed-line and mobile numbers, in E.164."""
    found = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in (phonenumbers.PhoneNumberType.FIXED_LINE, phonenumbers.PhoneNumberType.MOBILE):
            number = phonenumbers.example_number_for_type(region, kind)
            if number is not None:
                found.append(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))
    return found


async def test_numbers_are_written_as_phonenumbers_writes_them_and_every_region_is_in_the_picker(
    stack: Stack, chromium: Browser
) -> None:
    user = new_user()
    numbers = example_numbers()
    async with console_page(chromium, stack) as console:
        await console.sign_in(user)
        await expect(console.page.get_by_role("heading", name="What's your WhatsApp number?")).to_be_visible()
        written = await console.page.evaluate(
            """async (numbers) => {
                const { formatPhone } = await import("/console/assets/phone.js");
                return numbers.map((n) => formatPhone(n));
            }""",
            numbers,
        )
        wrong = [(n, got) for n, got in zip(numbers, written, strict=True) if got != shown_phone(n)]
        assert len(numbers) > 400 and wrong == [], wrong[:10]
        options = await console.page.get_by_label("Country code").locator("option").all_text_contents()
        assert len(options) == len(phonenumbers.SUPPORTED_REGIONS)
        for name in ("Germany (+49)", "Italy (+39)", "Kazakhstan (+7)", "Åland Islands (+358)"):
            assert name in options, name
        console.assert_clean()


async def test_onboarding_takes_numbers_with_their_own_country_code_then_continues(
    stack: Stack, chromium: Browser, shots: Path
) -> None:
    user = new_user()
    async with console_page(chromium, stack) as console, stack.client(user) as client:
        await console.page.context.grant_permissions(["clipboard-read", "clipboard-write"])
        await console.sign_in(user)
        page = console.page
        field = page.get_by_label("Your WhatsApp number")
        country = page.get_by_label("Country code")
        save = page.get_by_role("button", name="Save")
        await country.select_option(label="United States (+1)")
        # Pasted with its own code: the picker follows it.
        await page.evaluate("navigator.clipboard.writeText('+44 20 7946 0958')")
        await field.focus()
        await page.keyboard.press("ControlOrMeta+V")
        await expect(country).to_have_value("GB")
        await expect(field).to_have_value("2079460958")
        # Italy's leading 0 is part of the number; Germany's is the trunk prefix.
        for label, typed, saved in (
            ("Italy (+39)", "06 1234 5678", "+390612345678"),
            ("Germany (+49)", "030 1234567", "+49301234567"),
            ("United States (+1)", "0044 20 7946 0958", "+442079460958"),
        ):
            await country.select_option(label=label)
            await field.fill(typed)
            await save.click()
            await expect(page.locator(".onboarding .success")).to_have_text(f"Saved: {shown_phone(saved)}")
            assert (await client.get("/users/me")).json()["whatsappPhone"] == saved
        await country.select_option(label="Germany (+49)")
        await field.fill("12")
        await save.click()
        await expect(page.locator(".phone-field .error")).to_have_text("This number is too short.")
        await expect(page.get_by_role("button", name="Continue")).to_be_hidden()
        await field.fill("+1 415 555 2671")
        await save.click()
        saved_us = f"Saved: {shown_phone('+14155552671')}"
        await expect(page.locator(".onboarding .success")).to_have_text(saved_us)
        # +1 is shared by 25 regions: a San Francisco number is the US's, as libphonenumber says.
        await expect(country).to_have_value("US")
        # Saved is not a dead end: Continue leads on (to Settings, as no number is linked yet).
        go_on = page.get_by_role("button", name="Continue")
        await expect(go_on).to_be_focused()
        assert await axe_violations(page) == []
        await console.shoot_both(shots, "onboarding-saved-{w}")
        await go_on.click()
        await expect(page.get_by_role("heading", name="WhatsApp Inbox")).to_be_visible()
        console.assert_clean()


async def test_onboarding_saves_the_number_and_skip_goes_to_settings(
    stack: Stack, chromium: Browser, shots: Path
) -> None:
    user = new_user()
    async with console_page(chromium, stack) as console, stack.client(user) as client:
        await console.sign_in(user)
        await expect(console.page.get_by_role("heading", name="What's your WhatsApp number?")).to_be_visible()
        await console.shoot(shots, "onboarding-1280")
        assert await unnamed_controls(console.page) == []
        assert await axe_violations(console.page) == []
        field = console.page.get_by_label("Your WhatsApp number")
        await console.page.get_by_label("Country code").select_option(label="United States (+1)")
        await field.fill("41")
        await console.page.get_by_role("button", name="Save").click()
        await expect(console.page.locator(".phone-field .error")).to_have_text("This number is too short.")
        assert await axe_violations(console.page) == []
        await field.fill("(415) 555-2671")
        await console.page.get_by_role("button", name="Save").click()
        await expect(console.page.locator(".onboarding .success")).to_have_text(
            f"Saved: {shown_phone('+14155552671')}"
        )
        assert (await client.get("/users/me")).json()["whatsappPhone"] == "+14155552671"
        console.assert_clean()
    other = new_user()
    async with console_page(chromium, stack, "phone") as console, stack.client(other) as client:
        await console.sign_in(other)
        await expect(console.page.get_by_role("heading", name="What's your WhatsApp number?")).to_be_visible()
        await console.shoot(shots, "onboarding-375")
        assert await low_contrast(console.page) == []
        assert await axe_violations(console.page) == []
        await console.page.get_by_role("button", name="Skip for now").click()
        await expect(console.page.get_by_role("heading", name="WhatsApp Inbox")).to_be_visible()
        assert (await client.get("/users/me")).json()["whatsappPhone"] is None
        console.assert_clean()


async def test_sign_in_at_375_px_names_the_bridge_and_says_user_ids_are_case_sensitive(
    stack: Stack, chromium: Browser, shots: Path
) -> None:
    async with console_page(chromium, stack, "phone") as console:
        await console.page.goto(stack.base_url + "/")
        await expect(console.page.get_by_role("button", name="Open")).to_be_visible()
        # The green bar is not empty: it names what this is.
        await expect(console.page.locator(".top .brand")).to_be_visible()
        await expect(console.page.locator(".top .brand")).to_have_text("WhatsApp bridge")
        user_id = console.page.get_by_label("User id")
        await expect(user_id).to_have_accessible_description(
            "Only with the bridge's admin key: the user whose numbers to manage."
            " User ids are case-sensitive: “Ana” and “ana” are two users."
        )
        await console.shoot_both(shots, "signin-{w}")
        assert await axe_violations(console.page) == []
        assert await low_contrast(console.page) == []
        # Signed in, the screens' links take the brand's place on the one row.
        await console.sign_in(new_user(), "settings")
        await expect(console.page.get_by_role("heading", name="WhatsApp Inbox")).to_be_visible()
        await expect(console.page.locator(".top .brand")).to_be_hidden()
        console.assert_clean()


async def test_the_key_stays_in_session_storage_and_a_wrong_one_is_refused(
    stack: Stack, chromium: Browser
) -> None:
    user = new_user()
    async with console_page(chromium, stack) as console:
        await console.page.goto(stack.base_url + "/console/")
        await console.page.get_by_label("API key").fill("not-the-key")
        await console.page.get_by_label("User id").fill(user)
        await console.page.get_by_role("button", name="Open").click()
        await expect(console.page.get_by_role("alert").filter(has_text="refused")).to_be_visible()
        console.clean()  # the 401 it showed
        urls: list[str] = []
        console.page.on("request", lambda request: urls.append(request.url))
        await console.sign_in(user, "settings")
        await expect(console.page.locator("#live")).to_have_text("Live")
        stored = await console.page.evaluate("JSON.stringify(Object.keys(sessionStorage))")
        assert "bridge.apiKey" in stored
        assert await console.page.evaluate("localStorage.length") == 0
        assert not [u for u in urls if stack.api_key in u], "the key never goes into a URL"
        console.assert_clean()
