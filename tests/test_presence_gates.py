"""The rate limits of typing states (ours to WhatsApp) and presence frames (the contact's, to browsers),
on a clock the test moves."""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest

from actors.presence import PresenceGate, TypingGate
from actors.tasks import TaskGroup
from kernel.errors import RateLimited


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_typing_repeats_coalesce_and_changes_too_fast_are_refused() -> None:
    clock = Clock()
    gate = TypingGate(clock)
    assert gate.admit("a", "composing")
    gate.sent("a", "composing")

    clock.now += 9.9
    assert not gate.admit("a", "composing")  # the same state within 10 s: nothing to send
    assert gate.admit("b", "composing")  # per chat
    clock.now += 0.2
    assert gate.admit("a", "composing")  # 10 s on: sent again
    gate.sent("a", "composing")
    clock.now += 0.3
    with pytest.raises(RateLimited) as refused:
        gate.admit("a", "paused")
    assert (refused.value.http_status, refused.value.retry_after) == (429, 1)
    clock.now += 0.3
    assert gate.admit("a", "paused")


async def test_presence_frames_coalesce_and_the_last_word_arrives() -> None:
    clock = Clock()
    published: list[tuple[str, str]] = []

    async def publish(chat: str, state: str, last_seen: datetime | None) -> None:
        published.append((chat, state))

    tasks = TaskGroup("test")
    gate = PresenceGate(publish, tasks, clock)
    try:
        await gate.offer("a", "composing", None)
        clock.now += 1
        await gate.offer("a", "composing", None)  # a repeat: dropped
        await gate.offer("a", "paused", None)  # a change, 1 s after the last frame: at once
        clock.now += 0.1
        await gate.offer("a", "recording", None)  # 0.1 s after: waits for the gap to pass
        await gate.offer("b", "available", None)  # another chat: at once
        assert published == [("a", "composing"), ("a", "paused"), ("b", "available")]

        await gate.offer("a", "composing", None)  # replaces the waiting state: only the latest goes out
        await asyncio.sleep(0.6)
        assert published[-1] == ("a", "composing") and ("a", "recording") not in published

        clock.now += 0.2
        await gate.offer("a", "paused", None)
        clock.now += 0.1
        await gate.offer("a", "composing", None)  # back to what was published before the gap ended
        await asyncio.sleep(0.6)
        assert published == [("a", "composing"), ("a", "paused"), ("b", "available"), ("a", "composing")]
    finally:
        await tasks.cancel_all()
