"""A session's groups (only with `INBOX_CHATS=all`): listing, details, creation, members, invite link.

Every call needs the live connection (WhatsApp holds the truth; nothing here is stored). A group's own
events (`GroupChanged`) are journalled by the transitions as `StoreGroupChange`: the group's chat is
made or renamed and a `chat` frame with a `group` field says what changed.
"""

from __future__ import annotations

from collections.abc import Sequence

from actors.session_state import SessionState
from kernel.errors import GroupsDisabled, InvalidRecipient
from kernel.groups import GroupInfo, MemberChange, MemberOutcome
from kernel.ids import USER_SERVER, is_group, to_jid
from kernel.inbox_scope import InboxChats


class Groups:
    """What the API asks of a session about its groups."""

    def __init__(self, state: SessionState) -> None:
        self._state = state

    async def groups(self) -> list[GroupInfo]:
        await self._ready()
        return await self._state.timed(self._state.client_if_connected().groups())

    async def group(self, group_id: str) -> GroupInfo:
        gid = await self._group(group_id)
        return await self._state.timed(self._state.client_if_connected().group_info(gid))

    async def create(self, subject: str, participants: Sequence[str]) -> GroupInfo:
        await self._ready()
        people = _people(participants)
        return await self._state.timed(self._state.client_if_connected().create_group(subject, people))

    async def change(
        self, group_id: str, participants: Sequence[str], change: MemberChange
    ) -> list[MemberOutcome]:
        gid = await self._group(group_id)
        people = _people(participants)
        return await self._state.timed(self._state.client_if_connected().change_members(gid, people, change))

    async def invite_link(self, group_id: str, reset: bool) -> str:
        gid = await self._group(group_id)
        return await self._state.timed(self._state.client_if_connected().group_invite_link(gid, reset))

    async def _ready(self) -> None:
        if InboxChats(self._state.config.inbox_chats) is not InboxChats.ALL:
            raise GroupsDisabled()
        await self._state.wait_ready()

    async def _group(self, group_id: str) -> str:
        await self._ready()
        gid = to_jid(group_id)
        if not is_group(gid):
            raise InvalidRecipient(f"{gid} is not a group")
        return gid


def _people(participants: Sequence[str]) -> list[str]:
    people = [to_jid(p) for p in participants]
    for jid in people:
        if not jid.endswith("@" + USER_SERVER):
            raise InvalidRecipient(f"{jid} is not a person's number")
    return list(dict.fromkeys(people))
