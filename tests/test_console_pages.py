"""The console's pages, files and routes without a browser: a strict policy, no inline script, no CDN,
the phone metadata module made from `phonenumbers`, `CONSOLE_ENABLED=false`, and the QR as an image.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import phonenumbers
import pytest

from api.app import create_app
from kernel.settings import Settings
from tests.apikit import Stack, api_stack, new_user
from tests.consolekit import new_phone
from tests.raykit import eventually, local_ray

pytestmark = [pytest.mark.ray, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def stack(postgres_server: str, redis_server: str) -> Iterator[Stack]:
    with local_ray(), api_stack(postgres_server, redis_server) as running:
        yield running


async def test_console_pages_carry_a_strict_policy_and_no_inline_script(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        for path in ("/", "/console/"):
            page = await client.get(path)
            assert page.status_code == 200, path
            assert page.headers["content-type"].startswith("text/html")
            csp = page.headers["content-security-policy"]
            assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
            assert "unsafe-inline" not in csp
            assert page.headers["x-frame-options"] == "DENY"
            assert page.headers["referrer-policy"] == "no-referrer"
            scripts = re.findall(r"<script[^>]*>", page.text)
            assert scripts and all("src=" in tag for tag in scripts), scripts
            assert "http" not in "".join(re.findall(r'(?:src|href)="([^"]*)"', page.text)), "no CDN"
        asset = await client.get("/console/assets/main.js")
        assert asset.status_code == 200 and asset.headers["content-type"].startswith("text/javascript")
        assert (await client.get("/console/assets/nope.js")).json()["error"]["code"] == "not_found"
        assert (await client.get("/console/assets/..%2Fapi.py")).status_code == 404
        spec = (await client.get("/openapi.json")).json()
        assert "/sessions/{id}/qr.svg" in spec["paths"]
        assert "/" not in spec["paths"] and "/console/" not in spec["paths"]


async def test_console_enabled_false_serves_the_api_only(stack: Stack) -> None:
    settings = Settings(_env_file=None, **{**stack.settings.model_dump(), "console_enabled": False})
    app = create_app(settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bridge") as client:
        assert (await client.get("/")).status_code == 404
        assert (await client.get("/console/assets/main.js")).status_code == 404
        assert (await client.get("/openapi.json")).status_code == 200


async def test_qr_svg_is_the_code_showing_and_409_once_paired(stack: Stack) -> None:
    user = new_user()
    async with stack.client(user) as client:
        sid = (await client.post("/sessions", json={"slot": 1})).json()["id"]
        status = await eventually(lambda: client.get(f"/sessions/{sid}/status"), lambda r: r.json()["qr"])

        async def svg_and_code() -> tuple[httpx.Response, str | None]:
            svg = await client.get(f"/sessions/{sid}/qr.svg")
            return svg, (await client.get(f"/sessions/{sid}/status")).json()["qr"]

        svg, code = await eventually(svg_and_code, lambda pair: pair[0].status_code == 200)
        assert svg.headers["content-type"] == "image/svg+xml"
        assert svg.headers["cache-control"] == "no-store"
        assert re.match(r"\d{4}-\d\d-\d\dT", svg.headers["x-qr-expires-at"])
        assert code is not None and status.status_code == 200
        async with stack.client(new_user()) as stranger:
            assert (await stranger.get(f"/sessions/{sid}/qr.svg")).status_code == 404
        scanned = await client.post(f"/simulator/sessions/{sid}/scan", json={"phone": new_phone()})
        assert scanned.status_code == 200, scanned.text
        paired = await eventually(
            lambda: client.get(f"/sessions/{sid}/qr.svg"), lambda r: r.status_code == 409
        )
        assert paired.json()["error"]["code"] == "no_qr_showing"


async def test_the_phone_metadata_is_phonenumbers_own_as_a_module(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        module = await client.get("/console/assets/phone_meta.js")
    assert module.status_code == 200 and module.headers["content-type"].startswith("text/javascript")
    assert "script-src 'self'" in module.headers["content-security-policy"]
    assert module.text.count("export const META") == 1
    assert f'"version":"{phonenumbers.__version__}"' in module.text
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):  # every region the library knows
        assert f'["{region}",' in module.text, region
