"""The neonize adapter's calls out (block, unblock, decline a call, create a group, its invite link, a send
WhatsApp refuses, a number check) through the adapter's own methods and neonize 0.5.2's own Python client,
with only Go's functions standing in for whatsmeow.

Nothing here can reach WhatsApp, and a Go call for a client Go has not registered crashes the process, so
the one part replaced is the FFI function table neonize calls (`gocode.UpdateBlocklist(uuid, jid_bytes,
len, b"block")`...), installed the way the adapter installs its own bounded pool (`GoCalls.install`). The
stand-in reads what neonize serialised with neonize's protobuf classes and answers in neonize's wire
format (`GetBlocklistReturnFunction`, `SendMessageReturnFunction`...), with the error texts whatsmeow
returns (send.go, errors.go, request.go). Everything above it is real: the client connects through
neonize's `connect()` (the dial runs in the stand-in's `Neonize`), comes online from a real `Connected`
event through neonize's dispatcher, neonize builds each request and parses each answer, and raises its
own exception classes (`SendMessageError`, `GetGroupInviteLinkError`...), which the adapter maps to the
bridge's stable errors. What WhatsApp itself answers to these calls is not verifiable offline (README,
"Limits").
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from uuid import uuid4

import pytest

from actors.clients.neonize import NeonizeClient
from actors.clients.neonize.gocalls import GoCalls
from actors.ports import ClientOptions
from kernel.domain import Location, NumberCheck, Poll
from kernel.errors import (
    ClientError,
    NotGroupAdmin,
    SendFailed,
    WaError,
    WhatsAppRateLimited,
    WhatsAppRestricted,
)
from kernel.events import Connected
from kernel.groups import GroupMember
from tests import neonize_events as nev

pytestmark = pytest.mark.timeout(60)

UNUSED_DSN = "postgresql://nobody@127.0.0.1:1/never?sslmode=disable"
ME, ALICE, BOB, CAROL = "15559876543", "15551230001", "15551230002", "15551230003"
LID = "123456789012345"
GROUP = "120363012345678901"
AT_S = 1_700_000_000


@dataclass
class Call:
    name: str
    args: tuple[Any, ...]


@dataclass
class StandInGo:
    """neonize's FFI functions (`gocode.X`) as whatsmeow would answer them: serialised protobufs in, bytes
    out; `errors` gives the next answer of a function as whatsmeow's error text instead."""

    calls: list[Call] = field(default_factory=list)
    errors: dict[str, list[str]] = field(default_factory=dict)
    stopped: threading.Event = field(default_factory=threading.Event)

    def _error(self, name: str, *args: Any) -> str:
        self.calls.append(Call(name, args))
        queued = self.errors.get(name)
        return queued.pop(0) if queued else ""

    # Named as Go's functions are. The dial holds its thread for the session's life, until Stop, as Go's.
    def Neonize(self, *args: Any) -> bytes:
        self.stopped.wait(30)
        return b""

    def Stop(self, uuid: bytes) -> None:
        self.stopped.set()

    def GetMe(self, uuid: bytes) -> bytes:
        proto = nev.lib().proto
        me = proto.Device(PushName="Me", Platform="android", BussinessName="", Initialized=True)
        return bytes(me.SerializePartialToString())

    def SendMessage(self, uuid: bytes, to: bytes, to_len: int, msg: bytes, msg_len: int) -> bytes:
        proto = nev.lib().proto
        error = self._error("SendMessage", proto.JID.FromString(to), nev.lib().e2e.Message.FromString(msg))
        if error:
            return bytes(proto.SendMessageReturnFunction(Error=error).SerializePartialToString())
        sent = proto.SendResponse(ID=f"3EB0{len(self.calls):04d}", Timestamp=AT_S)
        return bytes(proto.SendMessageReturnFunction(SendResponse=sent).SerializePartialToString())

    def UpdateBlocklist(self, uuid: bytes, jid: bytes, jid_len: int, action: bytes) -> bytes:
        proto = nev.lib().proto
        who = proto.JID.FromString(jid)
        error = self._error("UpdateBlocklist", who, action)
        blocked = [who] if action == b"block" else []
        answer = proto.GetBlocklistReturnFunction(
            Error=error, Blocklist=proto.Blocklist(DHash="h", JIDs=blocked)
        )
        return bytes(answer.SerializePartialToString())

    def RejectCall(self, uuid: bytes, jid: bytes, jid_len: int, call_id: Any) -> bytes:
        caller = nev.lib().proto.JID.FromString(jid)
        return self._error("RejectCall", caller, call_id.value).encode()

    def GenerateMessageID(self, uuid: bytes) -> bytes:
        return b"3EB0CREATEKEY"

    def CreateGroup(self, uuid: bytes, request: bytes, request_len: int) -> bytes:
        proto = nev.lib().proto
        asked = proto.ReqCreateGroup.FromString(request)
        error = self._error("CreateGroup", asked)
        members = [proto.GroupParticipant(JID=nev.jid(ME), IsAdmin=True, IsSuperAdmin=True)]
        for person in asked.Participants:
            # whatsmeow's answer for someone whose privacy settings refuse the add: 403, not a member.
            members.append(proto.GroupParticipant(JID=person, Error=403 if person.User == CAROL else 0))
        info = proto.GroupInfo(
            JID=nev.jid(GROUP, "g.us"),
            OwnerJID=nev.jid(ME),
            GroupName=proto.GroupName(Name=asked.name, NameSetAt=AT_S),
            GroupCreated=float(AT_S),
            Participants=members,
        )
        answer = proto.GetGroupInfoReturnFunction(Error=error, GroupInfo=None if error else info)
        return bytes(answer.SerializePartialToString())

    def GetGroupInviteLink(self, uuid: bytes, jid: bytes, jid_len: int, revoke: bool) -> bytes:
        proto = nev.lib().proto
        error = self._error("GetGroupInviteLink", proto.JID.FromString(jid), revoke)
        code = "NewCode" if revoke else "OldCode"
        link = "" if error else f"https://chat.whatsapp.com/{code}"
        return bytes(
            proto.GetGroupInviteLinkReturnFunction(Error=error, InviteLink=link).SerializePartialToString()
        )

    def IsOnWhatsApp(self, uuid: bytes, numbers: bytes, numbers_len: int) -> bytes:
        proto = nev.lib().proto
        asked = numbers.decode().split()
        error = self._error("IsOnWhatsApp", asked)
        answers = [  # whatsmeow's usync answer: the account's JID for a number on WhatsApp
            proto.IsOnWhatsAppResponse(Query=q, IsIn=True, JID=nev.jid(q.lstrip("+")))
            if not q.endswith("0000")
            else proto.IsOnWhatsAppResponse(Query=q, IsIn=False, JID=nev.no_jid())
            for q in asked
        ]
        return bytes(
            proto.IsOnWhatsAppReturnFunction(
                Error=error, IsOnWhatsAppResponse=answers
            ).SerializePartialToString()
        )


@pytest.fixture
async def online() -> AsyncIterator[tuple[NeonizeClient, StandInGo]]:
    """A neonize client connected through neonize's own `connect()`, with Go's functions standing in."""
    client = NeonizeClient(ClientOptions(session_id=str(uuid4()), device_jid=None, auth_dsn=UNUSED_DSN))
    go = StandInGo()
    GoCalls(go, label="stand-in").install(client.native)
    try:
        await client.connect()
        nev.dispatch(client, nev.connected())
        connected = await asyncio.wait_for(anext(aiter(client.events())), 5.0)
        assert connected == Connected("Me", None)  # asked Go who we are: the client is online
        yield client, go
    finally:
        await client.stop()
    assert go.stopped.is_set(), "stop() stopped Go's client"


def _jid(proto: Any) -> str:
    return f"{proto.User}@{proto.Server}"


async def refused(call: Any) -> WaError:
    with pytest.raises(WaError) as caught:
        await call
    return caught.value


async def test_a_send_whatsapp_refuses_is_its_stable_code_through_the_adapter(
    online: tuple[NeonizeClient, StandInGo],
) -> None:
    client, go = online
    # send.go: fmt.Errorf("%w %d", ErrServerReturnedError, code); an IQError's "info query returned status
    # 429: rate-overlimit"; neonize raises each as a SendMessageError.
    go.errors["SendMessage"] = [
        "server returned error 463",
        "server returned error 429",
        "info query returned status 429: rate-overlimit",
        "server returned error 479",
    ]
    alice = f"{ALICE}@s.whatsapp.net"

    locked = await refused(client.send_text(alice, "hello"))
    too_fast = await refused(client.send_location(alice, Location(52.37, 4.89)))
    overlimit = await refused(client.send_poll(alice, Poll("Lunch?", ("Pizza", "Sushi"), selectable=1)))
    other = await refused(client.send_text(alice, "again"))
    sent = await client.send_text(alice, "at last")

    assert isinstance(locked, WhatsAppRestricted)
    assert (locked.http_status, locked.code) == (403, "whatsapp_restricted")
    for limited in (too_fast, overlimit):
        assert isinstance(limited, WhatsAppRateLimited)
        assert (limited.http_status, limited.code, limited.retry_after) == (429, "whatsapp_rate_limited", 60)
    assert isinstance(other, SendFailed) and (other.http_status, other.code) == (502, "send_failed")
    assert isinstance(locked.__cause__, nev.lib().exc.SendMessageError)  # neonize's own exception
    assert sent.id == "3EB00005" and sent.timestamp.timestamp() == AT_S
    # What neonize handed Go: the recipient and each message as the adapter built it.
    assert {_jid(c.args[0]) for c in go.calls} == {alice}
    assert [
        next(f.name for f, _ in c.args[1].ListFields() if f.name != "messageContextInfo") for c in go.calls
    ] == [
        "conversation",
        "locationMessage",
        "pollCreationMessage",
        "conversation",
        "conversation",
    ]
    assert go.calls[4].args[1].conversation == "at last"


async def test_blocking_and_unblocking_ask_whatsmeow_for_that_contact(
    online: tuple[NeonizeClient, StandInGo],
) -> None:
    client, go = online

    await client.set_blocked(f"+{ALICE}", True)
    await client.set_blocked(f"{LID}@lid", False)
    go.errors["UpdateBlocklist"] = ["info query returned status 400: bad-request"]
    failed = await refused(client.set_blocked(f"{BOB}@s.whatsapp.net", True))

    assert [(_jid(c.args[0]), c.args[1]) for c in go.calls] == [
        (f"{ALICE}@s.whatsapp.net", b"block"),
        (f"{LID}@lid", b"unblock"),
        (f"{BOB}@s.whatsapp.net", b"block"),
    ]
    assert isinstance(failed, ClientError) and failed.code == "client_error"
    assert isinstance(failed.__cause__, nev.lib().exc.UpdateBlocklistError)


async def test_a_call_is_declined_to_whom_it_came_from(online: tuple[NeonizeClient, StandInGo]) -> None:
    client, go = online

    await client.reject_call(f"{LID}@lid", "CALL-B")
    go.errors["RejectCall"] = ["websocket not connected"]  # whatsmeow's ErrNotConnected
    failed = await refused(client.reject_call(f"{ALICE}@s.whatsapp.net", "CALL-C"))

    assert [(_jid(c.args[0]), c.args[1]) for c in go.calls] == [
        (f"{LID}@lid", b"CALL-B"),
        (f"{ALICE}@s.whatsapp.net", b"CALL-C"),
    ]
    assert isinstance(failed, ClientError) and isinstance(failed.__cause__, nev.lib().exc.RejectCallError)


async def test_a_group_is_created_with_its_subject_and_the_people_asked(
    online: tuple[NeonizeClient, StandInGo],
) -> None:
    client, go = online

    group = await client.create_group("Family", [f"+{BOB}", f"{CAROL}@s.whatsapp.net"])
    go.errors["CreateGroup"] = ["info query returned status 406: not-acceptable"]
    failed = await refused(client.create_group("Again", [f"+{BOB}"]))

    asked = go.calls[0].args[0]
    assert (asked.name, [_jid(p) for p in asked.Participants]) == (
        "Family",
        [f"{BOB}@s.whatsapp.net", f"{CAROL}@s.whatsapp.net"],
    )
    assert asked.CreateKey == "3EB0CREATEKEY"  # neonize's own key, from whatsmeow's GenerateMessageID
    assert (group.jid, group.subject, group.owner) == (f"{GROUP}@g.us", "Family", f"{ME}@s.whatsapp.net")
    assert group.members == (  # Carol's privacy settings refused the add: not a member
        GroupMember(f"{ME}@s.whatsapp.net", f"+{ME}", admin=True, super_admin=True),
        GroupMember(f"{BOB}@s.whatsapp.net", f"+{BOB}"),
    )
    assert isinstance(failed, ClientError) and isinstance(failed.__cause__, nev.lib().exc.CreateGroupError)


async def test_the_invite_link_is_read_reset_and_refused_to_non_admins(
    online: tuple[NeonizeClient, StandInGo],
) -> None:
    client, go = online
    group = f"{GROUP}@g.us"

    link = await client.group_invite_link(group)
    reset = await client.group_invite_link(group, reset=True)
    # errors.go: ErrGroupInviteLinkUnauthorized, wrapped with the IQ error (401).
    go.errors["GetGroupInviteLink"] = [
        "you don't have the permission to get the group's invite link:"
        " info query returned status 401: not-authorized"
    ]
    not_admin = await refused(client.group_invite_link(group))

    assert [(_jid(c.args[0]), c.args[1]) for c in go.calls] == [(group, False), (group, True), (group, False)]
    assert (link, reset) == ("https://chat.whatsapp.com/OldCode", "https://chat.whatsapp.com/NewCode")
    assert isinstance(not_admin, NotGroupAdmin)
    assert (not_admin.http_status, not_admin.code) == (403, "not_group_admin")
    assert isinstance(not_admin.__cause__, nev.lib().exc.GetGroupInviteLinkError)


async def test_a_number_check_is_one_round_trip_and_its_rate_limit_a_stable_code(
    online: tuple[NeonizeClient, StandInGo],
) -> None:
    client, go = online

    checks = await client.check_numbers(["+1 555 123 0001", "15557770000"])
    go.errors["IsOnWhatsApp"] = ["info query returned status 429: rate-overlimit"]
    limited = await refused(client.check_numbers([f"+{BOB}"]))

    assert [c.args[0] for c in go.calls] == [["+15551230001", "+15557770000"], [f"+{BOB}"]]
    assert checks == [
        NumberCheck("+15551230001", True, "15551230001@s.whatsapp.net"),
        NumberCheck("+15557770000", False, None),
    ]
    assert isinstance(limited, WhatsAppRateLimited) and limited.code == "whatsapp_rate_limited"
