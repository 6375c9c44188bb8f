"""whatsmeow's answer to "are these numbers on WhatsApp?" (`IsOnWhatsApp`, one usync query for all of
them) as the bridge's `NumberCheck`s, in the order asked. whatsmeow answers with each number as queried
(`Query`, "+<digits>"), whether it has an account (`IsIn`) and its JID."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from actors.clients.neonize.convert import jid_str
from kernel.domain import NumberCheck
from kernel.errors import InvalidPhone, InvalidRecipient
from kernel.ids import USER_SERVER, phone_digits


def digits_of(phones: Sequence[str]) -> list[str]:
    try:
        return [phone_digits(p) for p in phones]
    except InvalidRecipient as err:
        raise InvalidPhone(str(err)) from err


def checks(asked: Sequence[str], responses: Iterable[Any]) -> list[NumberCheck]:
    """One check per number in `asked` (digits); a number whatsmeow did not answer for is not on it."""
    found: dict[str, Any] = {}
    for response in responses:
        digits = "".join(ch for ch in str(response.Query) if ch.isdigit())
        found[digits] = response
    out = []
    for digits in asked:
        response = found.get(digits)
        if response is None or not response.IsIn:
            out.append(NumberCheck(f"+{digits}", False, None))
            continue
        jid = jid_str(response.JID) if response.HasField("JID") else None
        out.append(NumberCheck(f"+{digits}", True, jid or f"{digits}@{USER_SERVER}"))
    return out
