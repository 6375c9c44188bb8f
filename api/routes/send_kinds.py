"""Sending a location, a contact card (vCard) or a poll through a session."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import IdempotencyKey, OwnedSession, Resources
from api.errors import error_responses
from api.schemas import SendResultOut
from api.schemas.sends import SendContactIn, SendLocationIn, SendPollIn
from kernel.domain import ContactCard, Location, Poll
from kernel.errors import InvalidPhone, InvalidRecipient
from kernel.ids import phone_digits, to_jid
from kernel.message_kinds import OutgoingContent, vcard
from kernel.wire import JSON, iso

router = APIRouter(tags=["send"])
_ERRORS = error_responses(400, 403, 404, 409, 422, 429, 502, 504)


async def _send(
    session_id: str, res: Resources, to: str, content: OutgoingContent, key: str | None, typing_ms: int
) -> JSON:
    sent = await res.actors.send_content(
        session_id, to_jid(to), content, idempotency_key=key, typing_ms=typing_ms
    )
    return {"id": sent.id, "timestamp": iso(sent.timestamp)}


@router.post("/sessions/{id}/send/location", response_model=SendResultOut, responses=_ERRORS)
async def send_location(
    body: SendLocationIn, session_id: OwnedSession, res: Resources, key: IdempotencyKey = None
) -> JSON:
    """Send a pinned location, optionally with the place's name and address."""
    location = Location(body.latitude, body.longitude, name=body.name, address=body.address)
    return await _send(session_id, res, body.to, location, key, body.typing_ms)


@router.post("/sessions/{id}/send/contact", response_model=SendResultOut, responses=_ERRORS)
async def send_contact(
    body: SendContactIn, session_id: OwnedSession, res: Resources, key: IdempotencyKey = None
) -> JSON:
    """Send a contact card (a vCard with the number, which WhatsApp links to its account)."""
    try:
        digits = phone_digits(body.phone)
    except InvalidRecipient as err:
        raise InvalidPhone("phone is not a valid phone number") from err
    card = ContactCard(body.name.strip(), vcard(body.name.strip(), digits))
    return await _send(session_id, res, body.to, card, key, body.typing_ms)


@router.post("/sessions/{id}/send/poll", response_model=SendResultOut, responses=_ERRORS)
async def send_poll(
    body: SendPollIn, session_id: OwnedSession, res: Resources, key: IdempotencyKey = None
) -> JSON:
    """Send a poll of 2 to 12 options, with a single answer or (`multipleAnswers`) any number."""
    options = tuple(o.strip() for o in body.options)
    poll = Poll(body.question.strip(), options, selectable=0 if body.multiple_answers else 1)
    return await _send(session_id, res, body.to, poll, key, body.typing_ms)
