"""Simulated network controls for what the other side and the phone do to a chat: the contact reacts,
edits or deletes a message, types or goes online; the user reads the chat on the phone.

Like `api.routes.simulator`: only with WA_BACKEND=simulated, API key needed, no user. Each answers 204
once the event is on its way to the session (it then shows as a `message_update`, `chat` or `presence`
frame); 409 while the session is not connected.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Response, status
from pydantic import AfterValidator, Field

from actors.calls import NetworkControls
from api.deps import Resources
from api.errors import error_responses
from api.routes.simulator import SessionIdParam, network
from api.schemas import MAX_ID, ApiModel, Id, Recipient, _emoji, _no_nul
from kernel.text_rules import MAX_TEXT

router = APIRouter(prefix="/simulator/sessions/{id}", tags=["simulator"])


def _done() -> Response:
    return Response(status_code=status.HTTP_204_NO_CONTENT)


class SimReactIn(ApiModel):
    chat_id: Recipient = Field(description="The contact's direct chat")
    message_id: Id
    emoji: Annotated[str, Field(max_length=64), AfterValidator(_emoji)] = Field(
        description='One emoji; "" removes the reaction'
    )
    from_me: bool = Field(False, description="The user reacted on the phone (not the contact)")


class SimEditIn(ApiModel):
    chat_id: Recipient
    message_id: Id
    text: Annotated[str, Field(min_length=1, max_length=MAX_TEXT), AfterValidator(_no_nul)]


class SimMessageIn(ApiModel):
    chat_id: Recipient
    message_id: Annotated[str, Field(min_length=1, max_length=MAX_ID)]


class SimReadIn(ApiModel):
    chat_id: Recipient
    up_to: datetime | None = Field(None, description="Read up to this time (default: now, everything)")


class SimPresenceIn(ApiModel):
    chat_id: Recipient
    state: Literal["composing", "recording", "paused", "available", "unavailable"]
    last_seen: datetime | None = Field(None, description="With `unavailable`: when they were last online")


@router.post("/react", status_code=status.HTTP_204_NO_CONTENT, responses=error_responses(404, 409))
async def react(session_id: SessionIdParam, body: SimReactIn, res: Resources) -> Response:
    """The contact (or, `fromMe`, the user on the phone) reacts to a message of the chat."""
    react = await network(res, session_id, NetworkControls.react)
    await react(
        chat_id=body.chat_id,
        message_id=body.message_id,
        emoji=body.emoji,
        from_me=body.from_me,
    )
    return _done()


@router.post("/edit", status_code=status.HTTP_204_NO_CONTENT, responses=error_responses(404, 409))
async def edit(session_id: SessionIdParam, body: SimEditIn, res: Resources) -> Response:
    """The contact edits their message: it keeps its id and gets the new text."""
    edit = await network(res, session_id, NetworkControls.edit)
    await edit(chat_id=body.chat_id, message_id=body.message_id, text=body.text)
    return _done()


@router.post("/revoke", status_code=status.HTTP_204_NO_CONTENT, responses=error_responses(404, 409))
async def revoke(session_id: SessionIdParam, body: SimMessageIn, res: Resources) -> Response:
    """The contact deletes their message for everyone."""
    revoke = await network(res, session_id, NetworkControls.revoke)
    await revoke(chat_id=body.chat_id, message_id=body.message_id)
    return _done()


@router.post("/read", status_code=status.HTTP_204_NO_CONTENT, responses=error_responses(404, 409))
async def read(session_id: SessionIdParam, body: SimReadIn, res: Resources) -> Response:
    """The user reads the chat on the phone: the bridge's unread count follows."""
    read = await network(res, session_id, NetworkControls.read)
    await read(chat_id=body.chat_id, up_to=body.up_to)
    return _done()


@router.post("/presence", status_code=status.HTTP_204_NO_CONTENT, responses=error_responses(404, 409))
async def presence(session_id: SessionIdParam, body: SimPresenceIn, res: Resources) -> Response:
    """The contact types, records a voice note, stops, comes online or goes offline."""
    presence = await network(res, session_id, NetworkControls.presence)
    await presence(chat_id=body.chat_id, state=body.state, last_seen=body.last_seen)
    return _done()


class SimCallIn(ApiModel):
    from_: Recipient = Field(alias="from", description="Who calls (a phone number or JID)")


class SimCallOut(ApiModel):
    call_id: str


@router.post("/call", response_model=SimCallOut, responses=error_responses(404, 409))
async def call(session_id: SessionIdParam, body: SimCallIn, res: Resources) -> dict[str, str]:
    """The contact calls this number: the session gets the call (and declines it with REJECT_CALLS)."""
    ring = await network(res, session_id, NetworkControls.call)
    offered = await ring(from_=body.from_)
    return {"callId": offered.call_id}


class SimVoteIn(ApiModel):
    chat_id: Recipient
    message_id: Id
    options: list[Annotated[str, Field(max_length=256), AfterValidator(_no_nul)]] = Field(
        max_length=12, description="The options the contact picks (none: they take their vote back)"
    )


@router.post("/vote", status_code=status.HTTP_204_NO_CONTENT, responses=error_responses(404, 409))
async def vote(session_id: SessionIdParam, body: SimVoteIn, res: Resources) -> Response:
    """The contact votes in a poll of the chat: the poll's tally changes (a `message_update`, `vote`)."""
    cast = await network(res, session_id, NetworkControls.vote)
    await cast(chat_id=body.chat_id, message_id=body.message_id, options=body.options)
    return _done()
