"""A number's outbound pace: a token bucket of `burst` sends refilled at `per_minute`.

A send beyond it is refused at once (`SendRateLimited`, 429 with `Retry-After`), never queued: the
caller decides whether to wait. A send refused before anything went out (a number not on WhatsApp, the
session not connected) gives its token back. `per_minute` or `burst` 0 turns the pace off.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from kernel.errors import SendRateLimited


class Pace:
    def __init__(self, per_minute: int, burst: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = per_minute / 60.0  # tokens per second
        self._burst = float(burst)
        self._on = per_minute > 0 and burst > 0
        self._clock = clock
        self._tokens = self._burst
        self._at = clock()

    @property
    def on(self) -> bool:
        return self._on

    def take(self) -> None:
        """Spend one send, or raise `SendRateLimited` with the seconds until one is free."""
        if not self._on:
            return
        self._refill()
        if self._tokens < 1.0:
            wait = (1.0 - self._tokens) / self._rate
            raise SendRateLimited(retry_after=max(1, math.ceil(wait)))
        self._tokens -= 1.0

    def give_back(self) -> None:
        """The send that took a token never went out."""
        if self._on:
            self._refill()
            self._tokens = min(self._burst, self._tokens + 1.0)

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
        self._at = now
