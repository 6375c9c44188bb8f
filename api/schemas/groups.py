"""Bodies of the group routes (`api.routes.groups`) and of the `chat` frame's `group` part."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, Field

from api.schemas.common import ApiModel, Recipient, _no_nul
from kernel.groups import MAX_PARTICIPANTS_CHANGE, MAX_SUBJECT

Subject = Annotated[str, Field(min_length=1, max_length=MAX_SUBJECT), AfterValidator(_no_nul)]
People = Annotated[
    list[Recipient],
    Field(min_length=1, max_length=MAX_PARTICIPANTS_CHANGE, description="Phone numbers (or user JIDs)"),
]


class ParticipantOut(ApiModel):
    id: str = Field(description="The participant's JID (a LID when WhatsApp hides their number)")
    phone: str | None = Field(description="E.164, when known")
    admin: bool
    super_admin: bool = Field(description="The group's creator")


class GroupOut(ApiModel):
    id: str = Field(description="The group's JID (…@g.us): its chat id")
    subject: str
    description: str | None
    owner: str | None = Field(description="Who created it (a JID), when WhatsApp says")
    created_at: datetime | None
    announce: bool = Field(description="Only admins can send messages")
    locked: bool = Field(description="Only admins can change the subject, description and picture")
    participants: list[ParticipantOut]
    admins: list[str] = Field(description="The admins' ids (the creator too)")


class GroupsOut(ApiModel):
    items: list[GroupOut]


class CreateGroupIn(ApiModel):
    subject: Subject
    participants: People


class ParticipantsIn(ApiModel):
    participants: People


class ParticipantChangeOut(ApiModel):
    id: str
    ok: bool
    error: str | None = Field(
        description="Why not: not_on_whatsapp, already_in_group, not_in_group, invite_required, refused"
    )


class ParticipantChangesOut(ApiModel):
    items: list[ParticipantChangeOut]


class InviteLinkOut(ApiModel):
    link: str = Field(description="https://chat.whatsapp.com/…")


class GroupChangeOut(ApiModel):
    """What a group's own event changed (`chat` frames about a group carry it as `group`)."""

    by: str | None
    at: datetime | None
    subject: str | None = Field(description="The new subject (null: unchanged)")
    description: str | None = Field(description='The new description (null: unchanged, "": removed)')
    joined: list[str]
    left: list[str]
    promoted: list[str]
    demoted: list[str]
