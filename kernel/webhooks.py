"""Webhook domain values: errors, what crosses between the store and the dispatchers, the retry schedule."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import datetime

from kernel.errors import BadRequest, NotFound

# Each attempt's delay before the cap: 5 s, 10 s, 20 s ... doubling (then jittered down by up to half).
BACKOFF_BASE_S = 5.0
EXCERPT_CHARS = 200


class WebhookUrlNotAllowed(BadRequest):
    code = "webhook_url_not_allowed"
    default_message = "The webhook URL must be https and resolve to a public address"


class WebhookNotFound(NotFound):
    code = "webhook_not_found"
    default_message = "No such webhook"


@dataclass(frozen=True, slots=True)
class LoggedEvent:
    """An event log entry to record deliveries of: its id (also as numbers), session, frame type, frame."""

    event_id: str
    ms: int
    seq: int
    session_id: str
    type: str
    body: str


@dataclass(frozen=True, slots=True)
class DueDelivery:
    """One pending delivery at the head of its (webhook, session) queue, with what sending it needs."""

    webhook_id: str
    event_id: str
    session_id: str
    url: str
    secret: str
    body: str
    attempts: int
    next_attempt_at: datetime
    created_at: datetime


@dataclass(frozen=True, slots=True)
class WebhookStats:
    """What /metrics shows about deliveries, as stored."""

    delivered: int
    failed: int
    pending: int
    retries: int
    oldest_pending_s: float


def backoff_s(attempts: int, cap_s: float, rng: random.Random | None = None) -> float:
    """The delay after the `attempts`-th failed attempt: exponential, capped, with "equal jitter" (a
    uniformly random half of the way down), so that receivers coming back are not hit all at once."""
    exp = math.ldexp(BACKOFF_BASE_S, min(max(attempts - 1, 0), 30))
    delay = min(cap_s, exp)
    jitter = rng.uniform(0, delay / 2) if rng is not None else random.uniform(0, delay / 2)
    return delay / 2 + jitter


def excerpt(text: str) -> str:
    """At most EXCERPT_CHARS printable characters of a receiver's reply or an error."""
    flat = "".join(c if c.isprintable() else " " for c in text[: EXCERPT_CHARS * 2])
    return flat[:EXCERPT_CHARS]
