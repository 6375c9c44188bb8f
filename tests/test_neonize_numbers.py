"""whatsmeow's IsOnWhatsApp answers, as real neonize 0.5.2 `IsOnWhatsAppResponse` protobufs, become the
bridge's checks in the order asked; a malformed number is refused before Go is asked."""

from __future__ import annotations

import pytest

from actors.clients.neonize import numbers
from kernel.domain import NumberCheck
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
