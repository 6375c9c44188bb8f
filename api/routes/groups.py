"""A number's WhatsApp groups (only with `INBOX_CHATS=all`; otherwise 404 `groups_disabled`): listing,
details, creation, adding and removing participants, the invite link. Each asks WhatsApp through the
session's live connection (409 `session_not_connected` without it)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response, status

from api.deps import OwnedSession, Resources
from api.errors import error_responses
from api.schemas import MAX_ID, RECIPIENT_PATTERN
from api.schemas.groups import (
    CreateGroupIn,
    GroupOut,
    GroupsOut,
    InviteLinkOut,
    ParticipantChangesOut,
    ParticipantsIn,
)
from kernel.errors import ClientError, ParticipantNotFound
from kernel.groups import GroupInfo, MemberChange, MemberOutcome
from kernel.ids import to_jid
from kernel.wire import JSON, iso

router = APIRouter(tags=["groups"])
GroupId = Annotated[
    str,
    Path(alias="groupId", max_length=MAX_ID, description="The group's JID (…@g.us)"),
]
ParticipantId = Annotated[
    str,
    Path(
        alias="participantId",
        max_length=MAX_ID,
        description="A phone number or the participant's JID",
        json_schema_extra={"pattern": RECIPIENT_PATTERN},
    ),
]
_GROUPS = "/sessions/{id}/groups"
_GROUP = _GROUPS + "/{groupId}"
_ERRORS = error_responses(403, 404, 409, 502, 504)


def group_json(group: GroupInfo) -> JSON:
    return {
        "id": group.jid,
        "subject": group.subject,
        "description": group.description,
        "owner": group.owner,
        "createdAt": iso(group.created_at),
        "announce": group.announce,
        "locked": group.locked,
        "participants": [
            {"id": m.jid, "phone": m.phone, "admin": m.admin, "superAdmin": m.super_admin}
            for m in group.members
        ],
        "admins": [m.jid for m in group.members if m.admin],
    }


def changes_json(outcomes: list[MemberOutcome]) -> JSON:
    return {"items": [{"id": o.jid, "ok": o.error is None, "error": o.error} for o in outcomes]}


@router.get(_GROUPS, response_model=GroupsOut, responses=_ERRORS)
async def groups(session_id: OwnedSession, res: Resources) -> JSON:
    """The groups this number is in, with their participants and admins."""
    return {"items": [group_json(g) for g in await res.actors.groups(session_id)]}


@router.post(_GROUPS, response_model=GroupOut, status_code=status.HTTP_201_CREATED, responses=_ERRORS)
async def create_group(body: CreateGroupIn, session_id: OwnedSession, res: Resources) -> JSON:
    """Create a group with this number as its admin. Who WhatsApp refused to add (not on WhatsApp, their
    privacy settings) is missing from `participants`: add them later or send them the invite link."""
    people: list[str] = [to_jid(p) for p in body.participants]
    return group_json(await res.actors.create_group(session_id, body.subject, people))


@router.get(_GROUP, response_model=GroupOut, responses=_ERRORS)
async def group(session_id: OwnedSession, res: Resources, group_id: GroupId) -> JSON:
    """A group's subject, description, participants and admins. 404 `group_not_found` when this number
    is not in it."""
    return group_json(await res.actors.group(session_id, to_jid(group_id)))


@router.post(_GROUP + "/participants", response_model=ParticipantChangesOut, responses=_ERRORS)
async def add_participants(
    body: ParticipantsIn, session_id: OwnedSession, res: Resources, group_id: GroupId
) -> JSON:
    """Add participants (admins only: 403 `not_group_admin`); one outcome each, in order."""
    people: list[str] = [to_jid(p) for p in body.participants]
    return changes_json(
        await res.actors.change_members(session_id, to_jid(group_id), people, MemberChange.ADD)
    )


@router.delete(_GROUP + "/participants/{participantId}", status_code=204, responses=_ERRORS)
async def remove_participant(
    session_id: OwnedSession, res: Resources, group_id: GroupId, participant_id: ParticipantId
) -> Response:
    """Remove a participant (admins only: 403 `not_group_admin`); 404 `participant_not_found` when they
    are not in the group."""
    person = to_jid(participant_id)
    done = await res.actors.change_members(session_id, to_jid(group_id), [person], MemberChange.REMOVE)
    if done and done[0].error is not None:
        if done[0].error == "not_in_group":
            raise ParticipantNotFound()
        raise ClientError(f"WhatsApp did not remove them ({done[0].error})")
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(_GROUP + "/invite-link", response_model=InviteLinkOut, responses=_ERRORS)
async def invite_link(session_id: OwnedSession, res: Resources, group_id: GroupId) -> JSON:
    """The group's invite link (admins only: 403 `not_group_admin`)."""
    return {"link": await res.actors.invite_link(session_id, to_jid(group_id), False)}


@router.delete(_GROUP + "/invite-link", response_model=InviteLinkOut, responses=_ERRORS)
async def revoke_invite_link(session_id: OwnedSession, res: Resources, group_id: GroupId) -> JSON:
    """Revoke the invite link: the old one stops working; the answer is the group's new one."""
    return {"link": await res.actors.invite_link(session_id, to_jid(group_id), True)}
