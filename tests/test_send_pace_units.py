"""The outbound pace: a token bucket per number, on a fake clock."""

from __future__ import annotations

import pickle

import pytest

from actors.pace import Pace
from kernel.errors import SendRateLimited


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_then_one_send_every_two_seconds_at_30_a_minute() -> None:
    clock = Clock()
    pace = Pace(30, 10, clock=clock)

    for _ in range(10):
        pace.take()
    with pytest.raises(SendRateLimited) as refused:
        pace.take()
    assert (refused.value.http_status, refused.value.code, refused.value.retry_after) == (
        429,
        "send_rate_limited",
        2,
    )

    clock.now += 1.0  # half a token: still refused, one more second to wait
    with pytest.raises(SendRateLimited) as again:
        pace.take()
    assert again.value.retry_after == 1
    clock.now += 1.0
    pace.take()
    clock.now += 3600.0  # an idle hour refills the burst, never more
    for _ in range(10):
        pace.take()
    with pytest.raises(SendRateLimited):
        pace.take()


def test_a_send_that_never_went_out_gives_its_token_back() -> None:
    pace = Pace(1, 1, clock=Clock())
    pace.take()
    pace.give_back()
    pace.take()
    with pytest.raises(SendRateLimited) as refused:
        pace.take()
    assert refused.value.retry_after == 60


@pytest.mark.parametrize(("per_minute", "burst"), [(0, 10), (30, 0), (0, 0)])
def test_zero_turns_the_pace_off(per_minute: int, burst: int) -> None:
    pace = Pace(per_minute, burst, clock=Clock())
    assert not pace.on
    for _ in range(1000):
        pace.take()


def test_the_refusal_survives_ray_pickling() -> None:
    pace = Pace(60, 1, clock=Clock())
    pace.take()
    with pytest.raises(SendRateLimited) as refused:
        pace.take()
    back = pickle.loads(pickle.dumps(refused.value))
    assert (type(back), back.retry_after) == (SendRateLimited, 1)
