"""The browser console (api/console/static): its page at `/` and `/console/`, and its files.

Static files shipped in the package, no build step; the page talks only to the public API. Every
response carries a strict Content-Security-Policy (no inline script, no other origin), and refuses to be
framed.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

from fastapi import APIRouter, Response
from fastapi.responses import RedirectResponse

from api.console.phone_meta import phone_meta_module
from kernel.errors import NotFound

router = APIRouter(include_in_schema=False)

ASSET_PREFIX = "/console/assets/"
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*\.(js|css|svg)$")
_TYPES = {"js": "text/javascript; charset=utf-8", "css": "text/css; charset=utf-8", "svg": "image/svg+xml"}

CSP = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        # blob: the QR code, images and voice notes fetched with the API key header; https: profile pictures.
        "img-src 'self' blob: data: https:",
        "media-src 'self' blob:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Permissions-Policy": "microphone=(self), camera=(), geolocation=()",
    "Cache-Control": "no-cache",
}


@cache
def _read(name: str) -> bytes | None:
    """A file of the console, or None; read once per process."""
    path = resources.files("api.console").joinpath("static", name)
    return path.read_bytes() if path.is_file() else None


def _page() -> Response:
    body = _read("index.html")
    if body is None:  # a broken install; say so rather than serve an empty page
        raise NotFound("the console's files are missing from this installation")
    return Response(body, media_type="text/html; charset=utf-8", headers=SECURITY_HEADERS)


@router.get("/")
async def console_root() -> Response:
    """The console's page."""
    return _page()


@router.get("/console/")
async def console_page() -> Response:
    """The console's page, at its own path too."""
    return _page()


@router.get("/console")
async def console_redirect() -> RedirectResponse:
    return RedirectResponse("/console/")


@router.get(ASSET_PREFIX + "phone_meta.js")
async def console_phone_meta() -> Response:
    """The phone numbers' metadata (`phonenumbers`'), as a module the console imports."""
    return Response(phone_meta_module(), media_type=_TYPES["js"], headers=SECURITY_HEADERS)


@router.get(ASSET_PREFIX + "{name}")
async def console_asset(name: str) -> Response:
    """One of the console's scripts, its stylesheet or icon."""
    match = _NAME.match(name)
    body = _read(name) if match else None
    if match is None or body is None:
        raise NotFound(f"no console file {name}")
    return Response(body, media_type=_TYPES[match.group(1)], headers=SECURITY_HEADERS)
