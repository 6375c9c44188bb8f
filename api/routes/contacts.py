"""The contacts behind a number: whether phone numbers are on WhatsApp, who a contact is, blocking."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response, status

from api.deps import OwnedSession, Resources
from api.errors import error_responses
from api.schemas import MAX_ID, RECIPIENT_PATTERN
from api.schemas.sends import CheckNumbersIn, ContactOut, NumberChecksOut
from kernel.errors import InvalidPhone, InvalidRecipient
from kernel.ids import phone_digits, phone_of_jid, to_jid
from kernel.wire import JSON, picture_path

router = APIRouter(tags=["contacts"])
ContactId = Annotated[
    str,
    Path(
        alias="contactId",
        max_length=MAX_ID,
        description="A phone number or the contact's JID",
        json_schema_extra={"pattern": RECIPIENT_PATTERN},
    ),
]
_CONTACT = "/sessions/{id}/contacts/{contactId}"


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


@router.get(_CONTACT, response_model=ContactOut, responses=error_responses(404, 409, 502, 504))
async def contact(session_id: OwnedSession, res: Resources, contact_id: ContactId) -> JSON:
    """Who a contact is, as WhatsApp tells this number: names, about text, picture, whether blocked.
    422 `not_on_whatsapp` for a number without an account."""
    info = await res.actors.contact(session_id, to_jid(contact_id))
    picture = picture_path(session_id, info.jid) if info.picture_id and info.in_inbox else None
    return {
        "id": info.jid,
        "phone": phone_of_jid(info.jid),
        "name": info.name,
        "pushName": info.push_name,
        "about": info.about,
        "pictureUrl": picture,
        "blocked": info.blocked,
    }


@router.put(
    _CONTACT + "/block",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(404, 409, 502, 504),
)
async def block(session_id: OwnedSession, res: Resources, contact_id: ContactId) -> Response:
    """Block the contact on WhatsApp (as the phone's "Block" does): they can no longer write to this
    number. Blocking a blocked contact is fine."""
    await res.actors.set_blocked(session_id, to_jid(contact_id), True)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.delete(
    _CONTACT + "/block",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(404, 409, 502, 504),
)
async def unblock(session_id: OwnedSession, res: Resources, contact_id: ContactId) -> Response:
    """Unblock the contact on WhatsApp."""
    await res.actors.set_blocked(session_id, to_jid(contact_id), False)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
