"""Typing and online states, rate-limited both ways: what we tell WhatsApp, and what we tell browsers.

Outgoing (`TypingGate`, per chat): the state sent last is not sent again within `REPEAT_S` (a console
sends `composing` on every keystroke: those coalesce into one), and a different state is refused with
`RateLimited` (429) sooner than `MIN_GAP_S` after the last one sent.

Incoming (`PresenceGate`, per chat): a state equal to the last one published is dropped within
`REPEAT_S`; a change publishes at once unless one was published less than `MIN_GAP_S` ago, and then the
latest state is published when that gap has passed (so the last word, e.g. `paused`, always arrives).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from actors.tasks import TaskGroup
from kernel.errors import RateLimited

TYPING_STATES = ("composing", "recording", "paused")
ONLINE_STATES = ("available", "unavailable")
REPEAT_S = 10.0
MIN_GAP_S = 0.5
MAX_CHATS = 1000  # per session: the oldest entries are forgotten beyond this


@dataclass(slots=True)
class _Last:
    state: str
    at: float


class TypingGate:
    """Decides whether a typing state for a chat goes to WhatsApp now (see the module's docstring)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last: dict[str, _Last] = {}

    def admit(self, chat_id: str, state: str) -> bool:
        """True: send it; False: coalesced (the same state went out recently). RateLimited: too soon."""
        now = self._clock()
        last = self._last.get(chat_id)
        if last is not None and last.state == state and now - last.at < REPEAT_S:
            return False
        if last is not None and now - last.at < MIN_GAP_S:
            raise RateLimited(f"typing state changed too soon; at most one per {MIN_GAP_S:g} s per chat")
        return True

    def sent(self, chat_id: str, state: str) -> None:
        self._last.pop(chat_id, None)
        self._last[chat_id] = _Last(state, self._clock())
        if len(self._last) > MAX_CHATS:
            self._last.pop(next(iter(self._last)))


Publish = Callable[[str, str, datetime | None], Awaitable[None]]


class PresenceGate:
    """Publishes contacts' presence frames, rate-limited per chat (see the module's docstring)."""

    def __init__(
        self, publish: Publish, tasks: TaskGroup, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._publish = publish
        self._tasks = tasks
        self._clock = clock
        self._last: dict[str, _Last] = {}
        self._pending: dict[str, tuple[str, datetime | None]] = {}

    async def offer(self, chat_id: str, state: str, last_seen: datetime | None) -> None:
        now = self._clock()
        last = self._last.get(chat_id)
        if chat_id in self._pending:
            self._pending[chat_id] = (state, last_seen)  # the flush sends the latest
            return
        if last is not None and last.state == state and now - last.at < REPEAT_S:
            return
        if last is not None and now - last.at < MIN_GAP_S:
            self._pending[chat_id] = (state, last_seen)
            self._tasks.spawn(self._flush_later(chat_id, last.at + MIN_GAP_S - now), "presence flush")
            return
        await self._send(chat_id, state, last_seen)

    async def _flush_later(self, chat_id: str, delay_s: float) -> None:
        await asyncio.sleep(max(0.0, delay_s))
        pending = self._pending.pop(chat_id, None)
        if pending is None:
            return
        last = self._last.get(chat_id)
        if last is not None and last.state == pending[0]:
            return  # back to what was already published
        await self._send(chat_id, *pending)

    async def _send(self, chat_id: str, state: str, last_seen: datetime | None) -> None:
        self._last.pop(chat_id, None)
        self._last[chat_id] = _Last(state, self._clock())
        if len(self._last) > MAX_CHATS:
            self._last.pop(next(iter(self._last)))
        await self._publish(chat_id, state, last_seen)
