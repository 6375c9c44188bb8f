"""WhatsApp groups as the bridge sees them: a group, its members, and what a membership change did.

Import-light (stdlib only): adapters build these, the session hands them across Ray, the API renders them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

MAX_SUBJECT = 100  # WhatsApp's limit on a group's subject (characters)
MAX_PARTICIPANTS_CHANGE = 50  # participants one add or create names (the routes' bound)


@dataclass(frozen=True, slots=True)
class GroupMember:
    """One participant: `jid` as WhatsApp addresses them (a phone number's, or a LID when it hides the
    number), `phone` its E.164 number when known."""

    jid: str
    phone: str | None
    admin: bool = False
    super_admin: bool = False  # the group's creator (owner)


@dataclass(frozen=True, slots=True)
class GroupInfo:
    jid: str
    subject: str
    description: str | None
    owner: str | None  # who created it (a JID), when WhatsApp says
    created_at: datetime | None
    members: tuple[GroupMember, ...]
    announce: bool = False  # only admins can send
    locked: bool = False  # only admins can edit the subject, description and picture


class MemberChange(StrEnum):
    ADD = "add"
    REMOVE = "remove"


@dataclass(frozen=True, slots=True)
class MemberOutcome:
    """What WhatsApp did for one participant of an add or remove: `error` None is done; otherwise its
    stable code (`not_on_whatsapp`, `not_in_group`, `already_in_group`, `invite_required`, `refused`)."""

    jid: str
    error: str | None = None


@dataclass(frozen=True, slots=True)
class GroupAct:
    """What another member does in a group (the simulated network's `/simulator/…/group` control): `by`
    acts in `group`; a `subject` or `description` ("" removes it) set, people joining, leaving, promoted
    or demoted. Numbers as given (E.164 or JIDs); the network turns them into JIDs."""

    group: str
    by: str
    subject: str | None = None
    description: str | None = None
    join: tuple[str, ...] = ()
    leave: tuple[str, ...] = ()
    promote: tuple[str, ...] = ()
    demote: tuple[str, ...] = ()


# whatsmeow's per-participant codes (GroupParticipant.Error, an HTTP-like status) and ours.
PARTICIPANT_ERRORS = {
    403: "invite_required",  # their privacy settings refuse being added: an invite is needed
    404: "not_on_whatsapp",
    409: "already_in_group",
    406: "not_in_group",
}


def participant_error(code: int) -> str | None:
    if code in (0, 200):
        return None
    return PARTICIPANT_ERRORS.get(code, "refused")
