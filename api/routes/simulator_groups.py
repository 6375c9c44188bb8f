"""Simulated network control for what another member does in a group (only with WA_BACKEND=simulated,
API key needed, no user): they rename it, change its description, add or remove people (this number
too), promote or demote; a group the network does not know is one they just added this number to.
The session gets it as WhatsApp's group event: a `chat` frame with `group`."""

from __future__ import annotations

from fastapi import APIRouter, Response, status
from pydantic import Field

from actors.calls import NetworkControls
from api.deps import Resources
from api.errors import error_responses
from api.routes.simulator import SessionIdParam, network
from api.schemas import ApiModel, Recipient
from api.schemas.groups import Subject
from kernel.groups import MAX_PARTICIPANTS_CHANGE, GroupAct

router = APIRouter(prefix="/simulator/sessions/{id}", tags=["simulator"])

_People = list[Recipient]


class SimGroupEventIn(ApiModel):
    group: Recipient = Field(description="The group's JID (…@g.us)")
    by: Recipient = Field(description="The member who acts (a phone number)")
    subject: Subject | None = None
    description: str | None = Field(None, max_length=2048, description='"" removes it')
    join: _People = Field([], max_length=MAX_PARTICIPANTS_CHANGE)
    leave: _People = Field([], max_length=MAX_PARTICIPANTS_CHANGE)
    promote: _People = Field([], max_length=MAX_PARTICIPANTS_CHANGE)
    demote: _People = Field([], max_length=MAX_PARTICIPANTS_CHANGE)


@router.post("/group", status_code=status.HTTP_204_NO_CONTENT, responses=error_responses(404, 409))
async def group_event(session_id: SessionIdParam, body: SimGroupEventIn, res: Resources) -> Response:
    """Another member acts in a group this number is in (or adds this number to a new one)."""
    act = await network(res, session_id, NetworkControls.group_event)
    people = (tuple(body.join), tuple(body.leave), tuple(body.promote), tuple(body.demote))
    await act(GroupAct(body.group, body.by, body.subject, body.description, *people))
    return Response(status_code=status.HTTP_204_NO_CONTENT)
