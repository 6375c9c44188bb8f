"""whatsmeow's answers about contacts, as real neonize 0.5.2 protobufs: IsOnWhatsApp (`IsOnWhatsAppResponse`)
becomes the bridge's checks in the order asked (a malformed number is refused before Go is asked), and
GetUserInfo + the contact store + the blocklist become a contact."""

from __future__ import annotations

import pytest

from actors.clients.neonize import numbers, profiles
from kernel.domain import ContactInfo, NumberCheck
from kernel.errors import InvalidPhone
from tests import neonize_events as nev


def test_answers_in_the_order_asked_with_the_accounts_jid() -> None:
    proto = nev.lib().proto
    # whatsmeow answers in its own order, each with the number as queried.
    responses = [
        proto.IsOnWhatsAppResponse(Query="+15550000000", IsIn=False, JID=nev.no_jid()),
        proto.IsOnWhatsAppResponse(Query="+15551230001", IsIn=True, JID=nev.jid("15551230001")),
    ]

    got = numbers.checks(["15551230001", "15550000000", "15559990000"], responses)

    assert got == [
        NumberCheck("+15551230001", True, "15551230001@s.whatsapp.net"),
        NumberCheck("+15550000000", False, None),
        NumberCheck("+15559990000", False, None),  # not answered for: not on WhatsApp
    ]


def test_numbers_are_digits_and_a_malformed_one_is_refused() -> None:
    assert numbers.digits_of(["+1 (555) 123-0001", "15551230002"]) == ["15551230001", "15551230002"]
    with pytest.raises(InvalidPhone):
        numbers.digits_of(["+15551230001", "call me"])


def test_a_contact_from_whatsmeows_user_info_contact_store_and_blocklist() -> None:
    proto = nev.lib().proto
    alice = "15551230001@s.whatsapp.net"
    users = [
        proto.GetUserInfoSingleReturnFunction(
            JID=nev.jid("15551230001"), UserInfo=proto.UserInfo(Status="At the gym", PictureID="1700000000")
        )
    ]
    entry = proto.ContactInfo(Found=True, FirstName="Alice", FullName="Alice Smith", PushName="Ally")
    blocked = proto.Blocklist(DHash="h", JIDs=[nev.jid("15551230001")])

    got = profiles.contact_from(alice, users, entry, blocked)
    unknown = profiles.contact_from(alice, [], proto.ContactInfo(Found=False), proto.Blocklist(DHash="h"))

    assert got == ContactInfo(alice, "Alice Smith", "Ally", "At the gym", True, "1700000000")
    assert unknown == ContactInfo(alice, None, None, None, False, None)
