"""Groups through whatsmeow: a collaborator of `NeonizeClient`, and its group events' conversion.

- Calls: GetJoinedGroups, GetGroupInfo, CreateGroup, UpdateGroupParticipants (add / remove: one
  GroupParticipant back per person, `Error` an HTTP-like code, 0 when done) and GetGroupInviteLink
  (`reset` revokes the link for a new one).
- Refusals, as whatsmeow words them (errors.go): `ErrGroupNotFound` "that group does not exist" (IQ 404),
  `ErrNotInGroup` "you're not participating in that group" (IQ 403), `ErrGroupInviteLinkUnauthorized`
  "you don't have the permission…" (IQ 401); a participants change by a non-admin is a bare IQ error
  ("info query returned status 401/403 …"). The first two are `GroupNotFound`, the others `NotGroupAdmin`.
- Events: `GroupInfoEv` (events.GroupInfo: subject, topic, join, leave, promote, demote) and
  `JoinedGroupEv` (this number was added, or created the group) become `GroupChanged`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from actors.clients.neonize import outgoing
from actors.clients.neonize.convert import from_s, jid_str
from kernel.errors import ClientError, GroupNotFound, NotGroupAdmin, WaError
from kernel.events import GroupChanged
from kernel.groups import GroupInfo, GroupMember, MemberChange, MemberOutcome, participant_error
from kernel.ids import phone_of_jid

log = logging.getLogger(__name__)

Call = Callable[..., Awaitable[Any]]


def group_refusal(text: str) -> WaError | None:
    """The domain error for whatsmeow's group refusals (see the module docstring), else None."""
    low = text.lower()
    if "does not exist" in low or "status 404" in low or "not participating" in low:
        return GroupNotFound()
    if "permission" in low or "status 401" in low or "status 403" in low or "not-authorized" in low:
        return NotGroupAdmin()
    return None


class NeonizeGroups:
    """Group calls of one neonize client (every Go call through the client's guarded `call`)."""

    def __init__(self, lib: Any, native: Any, call: Call, label: str) -> None:
        self._lib = lib
        self._native = native
        self._call = call
        self._label = label

    async def groups(self) -> list[GroupInfo]:
        found = await self._ask("listing groups", self._native.get_joined_groups)
        return [group_from(g) for g in found]

    async def group_info(self, jid: str) -> GroupInfo:
        info = await self._ask("group lookup", self._native.get_group_info, self._jid(jid))
        return group_from(info)

    async def create_group(self, subject: str, participants: Sequence[str]) -> GroupInfo:
        people = [self._jid(p) for p in participants]
        info = await self._ask("creating the group", self._native.create_group, subject, people)
        log.info("session %s: created group %s", self._label, jid_str(info.JID))
        return group_from(info)

    async def change_members(
        self, jid: str, participants: Sequence[str], change: MemberChange
    ) -> list[MemberOutcome]:
        action = getattr(self._lib.enums.ParticipantChange, change.name)
        people = [self._jid(p) for p in participants]
        done = await self._ask(
            "changing members", self._native.update_group_participants, self._jid(jid), people, action
        )
        return outcomes(participants, done)

    async def group_invite_link(self, jid: str, reset: bool = False) -> str:
        link = await self._ask("invite link", self._native.get_group_invite_link, self._jid(jid), reset)
        return str(link)

    async def _ask(self, what: str, fn: Call, *args: Any) -> Any:
        try:
            return await self._call(fn, *args)
        except self._lib.exc.NeonizeError as err:
            raise group_refusal(str(err)) or ClientError(f"{what} failed: {err}") from err

    def _jid(self, value: str) -> Any:
        return outgoing.jid_proto(self._lib, value)


def member_from(p: Any) -> GroupMember:
    """A GroupMember from whatsmeow's GroupParticipant (JID, maybe a LID; PhoneNumber when known)."""
    jid = jid_str(p.JID) or jid_str(p.PhoneNumber) or ""
    phone_jid = jid_str(p.PhoneNumber) if p.HasField("PhoneNumber") else None
    return GroupMember(
        jid, phone_of_jid(phone_jid or jid), bool(p.IsAdmin or p.IsSuperAdmin), bool(p.IsSuperAdmin)
    )


def group_from(info: Any) -> GroupInfo:
    """A GroupInfo from whatsmeow's types.GroupInfo (neonize's protobuf)."""
    topic = info.GroupTopic
    created = from_s(int(info.GroupCreated)) if info.GroupCreated else None
    return GroupInfo(
        jid=jid_str(info.JID) or "",
        subject=str(info.GroupName.Name),
        description=(str(topic.Topic) or None) if not topic.TopicDeleted else None,
        owner=jid_str(info.OwnerJID) if info.HasField("OwnerJID") else None,
        created_at=created,
        # CreateGroup answers those it could not add too, each with its error: they are not members.
        members=tuple(member_from(p) for p in info.Participants if participant_error(int(p.Error)) is None),
        announce=bool(info.GroupAnnounce.IsAnnounce),
        locked=bool(info.GroupLocked.isLocked),
    )


def outcomes(asked: Sequence[str], answered: Any) -> list[MemberOutcome]:
    """One outcome per person asked, in order: whatsmeow's answer for them (matched by JID or phone), or
    `refused` when WhatsApp said nothing about them."""
    by_jid: dict[str, MemberOutcome] = {}
    for p in answered:
        outcome = MemberOutcome(jid_str(p.JID) or "", participant_error(int(p.Error)))
        for key in (jid_str(p.JID), jid_str(p.PhoneNumber) if p.HasField("PhoneNumber") else None):
            if key:
                by_jid[key] = outcome
    return [
        MemberOutcome(jid, by_jid[jid].error) if jid in by_jid else MemberOutcome(jid, "refused")
        for jid in asked
    ]


def group_changed(ev: Any) -> GroupChanged | None:
    """A GroupChanged from events.GroupInfo (someone changed the group); None for an empty one."""
    chat = jid_str(ev.JID)
    if not chat:
        return None
    subject = str(ev.Name.Name) or None if ev.HasField("Name") else None
    description = None
    if ev.HasField("Topic"):
        description = "" if ev.Topic.TopicDeleted else str(ev.Topic.Topic)
    by = jid_str(ev.Sender) if ev.HasField("Sender") else None
    return GroupChanged(
        chat,
        from_s(int(ev.Timestamp)),
        by,
        subject,
        description,
        tuple(filter(None, (jid_str(j) for j in ev.Join))),
        tuple(filter(None, (jid_str(j) for j in ev.Leave))),
        tuple(filter(None, (jid_str(j) for j in ev.Promote))),
        tuple(filter(None, (jid_str(j) for j in ev.Demote))),
    )


def joined_group(ev: Any, own_jid: str | None) -> GroupChanged | None:
    """A GroupChanged from events.JoinedGroup: this number was added to a group (or created it)."""
    info = group_from(ev.GroupInfo)
    if not info.jid:
        return None
    by = jid_str(ev.Sender) if ev.HasField("Sender") else None
    return GroupChanged(
        info.jid, datetime.now(UTC), by, subject=info.subject or None, joined=(own_jid,) if own_jid else ()
    )
