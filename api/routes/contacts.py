"""The contacts behind a number: whether phone numbers are on WhatsApp."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import OwnedSession, Resources
from api.errors import error_responses
from api.schemas.sends import CheckNumbersIn, NumberChecksOut
from kernel.errors import InvalidPhone, InvalidRecipient
from kernel.ids import phone_digits
from kernel.wire import JSON

router = APIRouter(tags=["contacts"])


@router.post(
    "/sessions/{id}/contacts/check",
    response_model=NumberChecksOut,
    responses=error_responses(404, 409, 429, 502, 504),
)
async def check_numbers(body: CheckNumbersIn, session_id: OwnedSession, res: Resources) -> JSON:
    """Which of 1 to 50 phone numbers have a WhatsApp account, asked in one round trip; the session
    remembers the answers, and a send to a number without one is 422 `not_on_whatsapp`."""
    try:
        phones = [f"+{phone_digits(p)}" for p in body.phones]
    except InvalidRecipient as err:
        raise InvalidPhone(str(err)) from err
    checks = await res.actors.check_numbers(session_id, phones)
    return {"items": [{"phone": c.phone, "onWhatsApp": c.on_whatsapp, "jid": c.jid} for c in checks]}
