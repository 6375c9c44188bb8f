"""The simulated network's groups: a collaborator of `SimulatedClient`, both directions.

Rules (the README's simulated-network section says the same):
- Groups live in the session process's memory: a restarted session process starts with none.
- `create_group` makes `120363…@g.us` with this number as its creator (super admin); each participant is
  added unless the network refuses them: a number ending in `0000` is not on WhatsApp
  (`not_on_whatsapp`), one ending in `0403` only accepts invites (`invite_required`). Then, as whatsmeow
  does, a `GroupChanged` says this number joined, with the subject.
- Only admins add, remove and see or reset the invite link (`NotGroupAdmin` otherwise); adding a member
  is `already_in_group`, removing a stranger `not_in_group`. Each change that happens is a `GroupChanged`.
- Another member acts through `group_event` (the /simulator control): it renames the group, changes its
  description, adds or removes people (this number too), promotes or demotes. A group the network does
  not know yet is created by that member with this number in it: "someone added you to a group".
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from actors.clients.simulated.content import now
from actors.clients.simulated.kinds import not_on_whatsapp
from kernel.errors import GroupNotFound, InvalidInput, InvalidRecipient, NotGroupAdmin
from kernel.events import ClientEvent, GroupChanged
from kernel.groups import MAX_SUBJECT, GroupAct, GroupInfo, GroupMember, MemberChange, MemberOutcome
from kernel.ids import GROUP_SERVER, USER_SERVER, is_group, phone_of_jid, to_jid

log = logging.getLogger(__name__)

INVITE_PREFIX = "https://chat.whatsapp.com/"
_INVITE_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


@dataclass(slots=True)
class SimGroup:
    subject: str
    owner: str
    created_at: datetime
    members: dict[str, str]  # jid → "member" | "admin" | "superadmin"
    description: str | None = None
    invite: str = field(default_factory=lambda: _invite_code())

    def info(self, jid: str) -> GroupInfo:
        members = tuple(
            GroupMember(m, phone_of_jid(m), role != "member", role == "superadmin")
            for m, role in self.members.items()
        )
        return GroupInfo(jid, self.subject, self.description, self.owner, self.created_at, members)


def _invite_code() -> str:
    return "".join(secrets.choice(_INVITE_ALPHABET) for _ in range(22))


def _refusal(jid: str) -> str | None:
    if not_on_whatsapp(jid):
        return "not_on_whatsapp"
    if jid.endswith("0403@" + USER_SERVER):
        return "invite_required"
    return None


def subject_of(subject: str) -> str:
    text = subject.strip()
    if not text or len(text) > MAX_SUBJECT:
        raise InvalidInput(f"a group's subject is 1..{MAX_SUBJECT} characters")
    return text


class SimulatedGroups:
    """The groups this number is in, as the simulated network keeps them."""

    def __init__(
        self,
        emit: Callable[[ClientEvent], None],
        require_connected: Callable[[], None],
        own_jid: Callable[[], str],
        label: str,
    ) -> None:
        self._emit = emit
        self._require_connected = require_connected
        self._own_jid = own_jid
        self._label = label
        self._groups: dict[str, SimGroup] = {}

    # ------------------------------------------------------------------ the port

    async def groups(self) -> list[GroupInfo]:
        self._require_connected()
        own = self._own_jid()
        return [g.info(jid) for jid, g in self._groups.items() if own in g.members]

    async def group_info(self, jid: str) -> GroupInfo:
        self._require_connected()
        gid, group = self._member_of(jid)
        return group.info(gid)

    async def create_group(self, subject: str, participants: Sequence[str]) -> GroupInfo:
        self._require_connected()
        name = subject_of(subject)
        own = self._own_jid()
        jid = f"120363{secrets.randbelow(10**12):012d}@{GROUP_SERVER}"
        group = SimGroup(name, own, now(), {own: "superadmin"})
        for person in _people(participants):
            if person != own and _refusal(person) is None:
                group.members[person] = "member"
        self._groups[jid] = group
        self._emit(GroupChanged(jid, group.created_at, own, subject=name, joined=tuple(group.members)))
        log.info("session %s: created group %s with %d members", self._label, jid, len(group.members))
        return group.info(jid)

    async def change_members(
        self, jid: str, participants: Sequence[str], change: MemberChange
    ) -> list[MemberOutcome]:
        self._require_connected()
        gid, group = self._as_admin(jid)
        outcomes, done = [], []
        for person in _people(participants):
            error: str | None
            if change is MemberChange.ADD:
                error = "already_in_group" if person in group.members else _refusal(person)
                if error is None:
                    group.members[person] = "member"
            else:
                error = None if person in group.members else "not_in_group"
                if error is None:
                    del group.members[person]
            outcomes.append(MemberOutcome(person, error))
            if error is None:
                done.append(person)
        if done:
            own, people = self._own_jid(), tuple(done)
            added = change is MemberChange.ADD
            joined, left = (people, ()) if added else ((), people)
            self._emit(GroupChanged(gid, now(), own, joined=joined, left=left))
        return outcomes

    async def group_invite_link(self, jid: str, reset: bool = False) -> str:
        self._require_connected()
        _, group = self._as_admin(jid)
        if reset:
            group.invite = _invite_code()
        return INVITE_PREFIX + group.invite

    # ------------------------------------------------------------------ another member (/simulator)

    async def group_event(self, act: GroupAct) -> GroupChanged:
        """Another member (`act.by`) acts in `act.group`; a group the network does not know is theirs,
        made with this number in it. The `GroupChanged` this number's session gets."""
        self._require_connected()
        gid, actor, own = _group_jid(act.group), _person(act.by), self._own_jid()
        named = subject_of(act.subject) if act.subject is not None else None
        joined, left = list(_people(act.join)), list(_people(act.leave))
        known = self._groups.get(gid)
        if known is None:
            known = SimGroup(named or "Group", actor, now(), {actor: "superadmin", own: "member"})
            self._groups[gid] = known
            joined = [own, *(p for p in joined if p != own)]
        elif own not in known.members and own not in joined:
            raise GroupNotFound(f"this number is not in {gid}")
        known.members.setdefault(actor, "member")
        if named is not None:
            known.subject = named
        if act.description is not None:
            known.description = act.description.strip() or None
        for person in joined:
            known.members.setdefault(person, "member")
        for person in left:
            known.members.pop(person, None)
        for person, role in [
            *((p, "admin") for p in _people(act.promote)),
            *((p, "member") for p in _people(act.demote)),
        ]:
            if person in known.members and known.members[person] != "superadmin":
                known.members[person] = role
        event = GroupChanged(
            gid,
            now(),
            actor,
            named,
            act.description.strip() if act.description is not None else None,
            tuple(joined),
            tuple(left),
            tuple(_people(act.promote)),
            tuple(_people(act.demote)),
        )
        self._emit(event)
        return event

    # ------------------------------------------------------------------ internals

    def _member_of(self, jid: str) -> tuple[str, SimGroup]:
        gid = _group_jid(jid)
        group = self._groups.get(gid)
        if group is None or self._own_jid() not in group.members:
            raise GroupNotFound(f"this number is not in {gid}")
        return gid, group

    def _as_admin(self, jid: str) -> tuple[str, SimGroup]:
        gid, group = self._member_of(jid)
        if group.members[self._own_jid()] == "member":
            raise NotGroupAdmin()
        return gid, group


def _group_jid(value: str) -> str:
    jid = to_jid(value)
    if not is_group(jid):
        raise InvalidRecipient(f"{jid} is not a group")
    return jid


def _person(value: str) -> str:
    jid = to_jid(value)
    if not jid.endswith("@" + USER_SERVER):
        raise InvalidRecipient(f"{jid} is not a person's number")
    return jid


def _people(values: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(_person(v) for v in values))
