"""Onboarding: the user's own WhatsApp number."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import Resources, UserId
from api.errors import error_responses
from api.schemas import PhoneIn, PhoneOut, UserOut
from kernel.wire import JSON
from persistence import repo

router = APIRouter(tags=["users"])


@router.get("/users/me", response_model=UserOut, responses=error_responses(400))
async def me(res: Resources, user: UserId) -> JSON:
    """The calling user and the WhatsApp number they gave (null until they do)."""
    found = await res.db.run(repo.get_user, user)
    return {"id": found.id, "whatsappPhone": found.whatsapp_phone}


@router.put("/users/me/whatsapp-phone", response_model=PhoneOut, responses=error_responses(400))
async def set_phone(body: PhoneIn, res: Resources, user: UserId) -> JSON:
    """Store the user's own number, normalised to E.164 (`+1 (415) 555-2671` → `+14155552671`)."""
    stored = await res.db.run(repo.set_user_phone, user, body.phone)
    return {"phone": stored.whatsapp_phone}
