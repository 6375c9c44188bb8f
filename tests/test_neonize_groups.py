"""whatsmeow's group answers and events, as real neonize 0.5.2 protobufs: a GroupInfo becomes the bridge's
group (subject, description, members, admins, the creator), UpdateGroupParticipants' per-person answers
become outcomes in the order asked, events.GroupInfo and events.JoinedGroup become `GroupChanged`, and
whatsmeow's refusals (its own words, errors.go) become `group_not_found` / `not_group_admin`."""

from __future__ import annotations

from datetime import UTC, datetime

from actors.clients.neonize import groups
from kernel.errors import GroupNotFound, NotGroupAdmin
from kernel.groups import GroupMember, MemberOutcome
from tests import neonize_events as nev

GROUP = "120363012345678901@g.us"
ALICE, BOB, CAROL = "15551230001@s.whatsapp.net", "15551230002@s.whatsapp.net", "15551230003@s.whatsapp.net"


def _group_info() -> object:
    proto = nev.lib().proto
    return proto.GroupInfo(
        JID=nev.jid("120363012345678901", "g.us"),
        OwnerJID=nev.jid("15551230001"),
        GroupName=proto.GroupName(Name="Family", NameSetAt=1_700_000_000),
        GroupTopic=proto.GroupTopic(Topic="Dinner plans", TopicID="T1"),
        GroupAnnounce=proto.GroupAnnounce(IsAnnounce=True),
        GroupLocked=proto.GroupLocked(isLocked=False),
        GroupCreated=1_700_000_000.0,
        Participants=[
            proto.GroupParticipant(JID=nev.jid("15551230001"), IsAdmin=True, IsSuperAdmin=True),
            proto.GroupParticipant(JID=nev.jid("15551230002"), IsAdmin=True),
            # A LID-addressed member whose number WhatsApp tells.
            proto.GroupParticipant(JID=nev.jid("99887766554433", "lid"), PhoneNumber=nev.jid("15551230003")),
            # CreateGroup's answer for someone whose privacy settings refused the add: not a member.
            proto.GroupParticipant(JID=nev.jid("15551230009"), Error=403),
        ],
    )


def test_a_group_from_whatsmeows_group_info() -> None:
    got = groups.group_from(_group_info())

    assert (got.jid, got.subject, got.description, got.owner) == (GROUP, "Family", "Dinner plans", ALICE)
    assert got.created_at == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert (got.announce, got.locked) == (True, False)
    assert got.members == (
        GroupMember(ALICE, "+15551230001", admin=True, super_admin=True),
        GroupMember(BOB, "+15551230002", admin=True),
        GroupMember("99887766554433@lid", "+15551230003"),
    )


def test_a_deleted_description_is_none() -> None:
    proto = nev.lib().proto
    info = proto.GroupInfo(
        JID=nev.jid("120363012345678901", "g.us"),
        GroupName=proto.GroupName(Name="Family"),
        GroupTopic=proto.GroupTopic(Topic="old", TopicDeleted=True),
    )

    assert groups.group_from(info).description is None


def test_participant_changes_answer_each_person_in_the_order_asked() -> None:
    proto = nev.lib().proto
    answered = [
        proto.GroupParticipant(JID=nev.jid("15551230002"), Error=409),
        proto.GroupParticipant(JID=nev.jid("15551230001")),
        proto.GroupParticipant(JID=nev.jid("15551230004"), Error=403),
    ]

    got = groups.outcomes([ALICE, BOB, "15551230004@s.whatsapp.net", CAROL], answered)

    assert got == [
        MemberOutcome(ALICE, None),
        MemberOutcome(BOB, "already_in_group"),
        MemberOutcome("15551230004@s.whatsapp.net", "invite_required"),
        MemberOutcome(CAROL, "refused"),  # WhatsApp said nothing about them
    ]


def test_a_group_info_event_becomes_a_group_change() -> None:
    proto = nev.lib().proto
    ev = proto.GroupInfoEvent(
        JID=nev.jid("120363012345678901", "g.us"),
        Sender=nev.jid("15551230002"),
        Timestamp=1_700_000_100,
        Name=proto.GroupName(Name="Family 2"),
        Join=[nev.jid("15551230003")],
        Leave=[nev.jid("15551230004")],
        Promote=[nev.jid("15551230003")],
    )

    got = groups.group_changed(ev)

    assert got is not None
    assert (got.chat_id, got.by, got.subject, got.description) == (GROUP, BOB, "Family 2", None)
    assert (got.joined, got.left, got.promoted, got.demoted) == (
        (CAROL,),
        ("15551230004@s.whatsapp.net",),
        (CAROL,),
        (),
    )
    assert got.at == datetime.fromtimestamp(1_700_000_100, UTC)


def test_a_removed_description_is_an_empty_one() -> None:
    proto = nev.lib().proto
    ev = proto.GroupInfoEvent(
        JID=nev.jid("120363012345678901", "g.us"),
        Timestamp=1_700_000_100,
        Topic=proto.GroupTopic(TopicDeleted=True),
    )

    got = groups.group_changed(ev)

    assert got is not None and (got.description, got.subject, got.by) == ("", None, None)


def test_being_added_to_a_group_is_joining_it() -> None:
    proto = nev.lib().proto
    ev = proto.JoinedGroup(Reason="", Type="new", GroupInfo=_group_info(), Sender=nev.jid("15551230001"))

    got = groups.joined_group(ev, CAROL)

    assert got is not None
    assert (got.chat_id, got.by, got.subject, got.joined) == (GROUP, ALICE, "Family", (CAROL,))


def test_whatsmeows_refusals_in_its_own_words() -> None:
    # errors.go: ErrGroupNotFound, ErrNotInGroup, ErrGroupInviteLinkUnauthorized, wrapped with the IQ error.
    assert isinstance(
        groups.group_refusal("that group does not exist: info query returned status 404: item-not-found"),
        GroupNotFound,
    )
    assert isinstance(
        groups.group_refusal(
            "you're not participating in that group: info query returned status 403: forbidden"
        ),
        GroupNotFound,
    )
    assert isinstance(
        groups.group_refusal(
            "you don't have the permission to get the group's invite link: info query returned status 401"
        ),
        NotGroupAdmin,
    )
    assert isinstance(groups.group_refusal("info query returned status 403: forbidden"), NotGroupAdmin)
    assert groups.group_refusal("websocket not connected") is None
