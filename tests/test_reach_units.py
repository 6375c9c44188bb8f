"""Which numbers are on WhatsApp, remembered for a while (actors.reach), over the simulated adapter's
answers, on a fake clock: a number is asked once, and again only when its answer is old."""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import Any

import pytest

from actors.reach import OFF_TTL_S, ON_TTL_S, Reach
from kernel.domain import NumberCheck
from kernel.errors import NotOnWhatsApp


class Network:
    """Counts the round trips; a number ending in 0000 has no account (the simulated network's rule)."""

    def __init__(self) -> None:
        self.asked: list[list[str]] = []

    async def check_numbers(self, phones: Sequence[str]) -> list[NumberCheck]:
        self.asked.append(list(phones))
        return [
            NumberCheck(p, not p.endswith("0000"), None if p.endswith("0000") else f"{p[1:]}@s.whatsapp.net")
            for p in phones
        ]


async def passthrough(call: Awaitable[Any]) -> Any:
    return await call


async def test_a_number_is_asked_once_and_again_when_its_answer_is_old() -> None:
    network, now = Network(), [0.0]
    reach = Reach(lambda: network, passthrough, clock=lambda: now[0])  # type: ignore[arg-type,return-value]

    checks = await reach.check(["+15551230001", "+15550000000"])
    assert [c.on_whatsapp for c in checks] == [True, False]
    await reach.require("15551230001@s.whatsapp.net")
    with pytest.raises(NotOnWhatsApp):
        await reach.require("15550000000@s.whatsapp.net")
    await reach.require("120363000000000001@g.us")  # groups and LIDs are WhatsApp's own: never asked
    await reach.require("123456789@lid")
    assert len(network.asked) == 1

    now[0] += OFF_TTL_S + 1  # a number without an account may join: asked again after a while
    with pytest.raises(NotOnWhatsApp):
        await reach.require("15550000000@s.whatsapp.net")
    await reach.require("15551230001@s.whatsapp.net")
    assert network.asked[1:] == [["+15550000000"]]
    now[0] += ON_TTL_S
    await reach.require("15551230001@s.whatsapp.net")
    assert network.asked[2:] == [["+15551230001"]]
