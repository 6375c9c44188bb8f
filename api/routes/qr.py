"""The QR code a session shows, as an SVG image (what the console puts on screen)."""

from __future__ import annotations

import io

import segno
from fastapi import APIRouter, Response

from api import reads
from api.deps import OwnedSession, Resources, UserId
from api.errors import error_responses
from kernel.errors import NoQrShowing
from kernel.wire import iso

router = APIRouter(tags=["sessions"])

# Modules per side of the quiet zone: the 4 the QR standard asks for, so phones find the code.
QUIET_ZONE = 4


def qr_svg(payload: str) -> bytes:
    """An SVG of `payload` (error correction M, as WhatsApp's own QR), one unit per module."""
    out = io.BytesIO()
    code = segno.make_qr(payload, error="m")
    code.save(out, kind="svg", scale=1, border=QUIET_ZONE, xmldecl=False, title="WhatsApp link QR code")
    return out.getvalue()


@router.get(
    "/sessions/{id}/qr.svg",
    response_class=Response,
    responses={
        200: {
            "content": {"image/svg+xml": {"schema": {"type": "string"}}},
            "description": "The QR code showing now; `X-QR-Expires-At` says until when (ISO 8601 UTC)",
        },
        **error_responses(400, 404, 409),
    },
)
async def session_qr_svg(session_id: OwnedSession, res: Resources, user: UserId) -> Response:
    """The QR code showing now, as SVG; 409 `no_qr_showing` when none is (paired, between rounds, or
    while the session's process is not up)."""
    view = await reads.session_status(res, user, session_id)
    if view.qr is None:
        raise NoQrShowing()
    headers = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
    if view.qr_expires_at is not None:
        headers["X-QR-Expires-At"] = iso(view.qr_expires_at) or ""
    return Response(qr_svg(view.qr), media_type="image/svg+xml", headers=headers)
