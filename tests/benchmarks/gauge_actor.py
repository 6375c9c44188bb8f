"""`GaugeActor`: `BareActor` plus one Ray custom metric, a session-status gauge set on each transition
(what a session would export for the dashboard). A module of its own: the worker imports only this."""

from __future__ import annotations

import os
from typing import Any

CAPACITY_RESOURCE = "wa_session"
STATUSES = ("connecting", "qr", "connected", "disconnected")


class GaugeActor:
    def __init__(self, session_id: str) -> None:
        from ray.util.metrics import Gauge

        self._session_id = session_id
        self._gauge = Gauge(
            "wa_session_status", "1 for the session's current status", tag_keys=("session", "status")
        )
        self.transition("connecting")

    def transition(self, status: str) -> None:
        for each in STATUSES:
            self._gauge.set(
                1.0 if each == status else 0.0, tags={"session": self._session_id, "status": each}
            )

    async def ping(self) -> int:
        return os.getpid()


def create_gauge_actor(namespace: str, index: int) -> Any:
    import ray

    remote: Any = ray.remote(GaugeActor)
    return remote.options(
        name=f"gauge-{index}",
        namespace=namespace,
        lifetime="detached",
        num_cpus=0,
        resources={CAPACITY_RESOURCE: 1},
        scheduling_strategy="SPREAD",
    ).remote(f"s{index}")
