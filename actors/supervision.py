"""The registry's bookkeeping between passes: creation pacing, strikes, first-seen clocks. No Ray."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Pending:
    """Sessions whose actor Ray has not placed: no node with a free `wa_session` unit, or restarting."""

    count: int
    oldest_s: float | None  # how long the oldest has waited, as seen by this registry process
    session_ids: tuple[str, ...]
    # Sessions waiting to be placed, or placed and not answering, for longer than the registry's
    # `stall_s`: /health says `degraded` while there are any.
    stalled: int = 0


@dataclass(frozen=True, slots=True)
class Writes:
    """What the sessions' journals reported on the registry's last pass (`SessionActor.ping`)."""

    spooled: int  # received, not yet in PostgreSQL
    failed: int  # set aside: PostgreSQL could not apply them (`whatsapp-bridge spool replay`)
    refused: tuple[str, ...]  # why the database refuses sessions' writes now (e.g. `read_only`), sorted
    sessions_failed: tuple[str, ...]  # the sessions that hold set-aside writes


@dataclass(frozen=True, slots=True)
class Replayed:
    """One session's answer to `spool replay`: how many set-aside writes it requeued, or why it could not."""

    session_id: str
    replayed: int | None
    error: str | None = None


@dataclass(slots=True)
class Pacer:
    """Spaces actor creations `1 / rate` seconds apart."""

    rate: float
    _next: float = field(default=0.0)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def wait(self) -> None:
        async with self._lock:
            now = time.monotonic()
            delay = self._next - now
            self._next = max(now, self._next) + 1.0 / self.rate
        if delay > 0:
            await asyncio.sleep(delay)


@dataclass(slots=True)
class Since:
    """When each key was first seen in its current unbroken run of observations (monotonic seconds)."""

    _first: dict[str, float] = field(default_factory=dict)

    def observe(self, keys: Iterable[str]) -> set[str]:
        """The keys seen on this pass (any other key's run ends); returns those whose run starts now."""
        now = time.monotonic()
        seen = set(keys)
        new = seen - self._first.keys()
        self._first = {key: self._first.get(key, now) for key in seen}
        return new

    def age(self, key: str) -> float:
        return time.monotonic() - self._first[key]

    def oldest(self) -> float | None:
        return time.monotonic() - min(self._first.values()) if self._first else None

    def keys(self) -> list[str]:
        return sorted(self._first)

    def older_than(self, seconds: float) -> set[str]:
        """The keys whose run is longer than `seconds`."""
        since = time.monotonic() - seconds
        return {key for key, first in self._first.items() if first < since}

    def forget(self, key: str) -> None:
        self._first.pop(key, None)

    def clear(self) -> None:
        self._first.clear()

    def __len__(self) -> int:
        return len(self._first)


@dataclass(slots=True)
class Strikes:
    """How many passes in a row each key failed a check."""

    _count: dict[str, int] = field(default_factory=dict)

    def hit(self, key: str) -> int:
        self._count[key] = self._count.get(key, 0) + 1
        return self._count[key]

    def clear(self, key: str) -> None:
        self._count.pop(key, None)

    def keep_only(self, keys: Iterable[str]) -> None:
        kept = set(keys)
        self._count = {key: n for key, n in self._count.items() if key in kept}
