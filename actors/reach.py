"""Which numbers are on WhatsApp, asked once and remembered for a while.

WhatsApp restricts numbers that write to numbers without an account (the reach-out time lock), so a
send to a phone number is checked first: `require` raises `NotOnWhatsApp` (422) before anything goes
out. Answers are kept per number (`ON_TTL_S` for an account, `OFF_TTL_S` for none: a number may join),
at most `MAX_KEPT` of them; `check` asks for up to 50 numbers in one round trip and fills the cache.
Groups and LIDs are not checked: WhatsApp gave us those.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence

from actors.ports import WhatsAppClient
from kernel.domain import NumberCheck
from kernel.errors import NotOnWhatsApp
from kernel.ids import USER_SERVER, jid_user

ON_TTL_S = 6 * 3600.0
OFF_TTL_S = 600.0
MAX_KEPT = 5000


class Reach:
    def __init__(
        self,
        client: Callable[[], WhatsAppClient],
        timed: Callable[[Awaitable[list[NumberCheck]]], Awaitable[list[NumberCheck]]],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client  # the connected client, or SessionNotConnected
        self._timed = timed
        self._clock = clock
        self._kept: OrderedDict[str, tuple[bool, float]] = OrderedDict()  # digits → (on, expires)

    async def check(self, phones: Sequence[str]) -> list[NumberCheck]:
        """Ask WhatsApp about `phones` (one round trip), remembering each answer."""
        checks = await self._timed(self._client().check_numbers(list(phones)))
        now = self._clock()
        for check in checks:
            digits = check.phone.lstrip("+")
            self._kept[digits] = (check.on_whatsapp, now + (ON_TTL_S if check.on_whatsapp else OFF_TTL_S))
            self._kept.move_to_end(digits)
        while len(self._kept) > MAX_KEPT:
            self._kept.popitem(last=False)
        return checks

    async def require(self, jid: str) -> None:
        """Raise `NotOnWhatsApp` when the phone number `jid` has no WhatsApp account."""
        if not jid.endswith("@" + USER_SERVER):
            return
        digits = jid_user(jid)
        known = self._kept.get(digits)
        if known is None or known[1] <= self._clock():
            (check,) = await self.check([f"+{digits}"])
            on = check.on_whatsapp
        else:
            on = known[0]
        if not on:
            raise NotOnWhatsApp(f"+{digits} is not on WhatsApp")
