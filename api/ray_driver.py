"""The API process's Ray driver, kept connected across a head that is replaced.

A driver survives a head outage by itself when the same GCS comes back (GCS fault tolerance:
`api.cli` gives it an unbounded reconnect timeout). A *fresh* head on the same address (no GCS fault
tolerance, or its storage lost) is another cluster: the old driver's calls fail for good
(`WrongClusterID`), although `ray.is_initialized()` stays true. `RayDriver` is the supervisor for that:

- Every `probe_every_s` it looks the registry up through the GCS, in a thread of its own and within
  `probe_timeout_s` (a GCS call can block far longer and cannot be cancelled; at most one is in flight).
- A fresh cluster answering, a driver that is not initialised, or a GCS unreachable for longer than
  `reinit_after_s`: it runs `ray.shutdown()` and connects again (`connect`, then `ensure`, the same
  calls as at start-up: the registry recreates the sessions from PostgreSQL), retrying with capped,
  jittered backoff until it succeeds or the process stops. A registry missing from a live cluster is
  only ensured.
- Meanwhile `connected` is false: `api.unavailable.ray_unavailable` turns every actor call into 503 +
  Retry-After before it touches Ray, and `generation` changes once connected again, so cached actor
  handles of the old cluster are dropped.
- `healthy()` probes now, for /health: `ray.nodes()` aborts the whole process (a failed
  check in Ray's GlobalStateAccessor) when a fresh cluster answers the old driver, measured with Ray
  2.60; the registry lookup raises instead.
- The loop never dies: a failing step is logged and the next one runs.

One driver per process, as Ray's own state is: `supervised()` installs it, `current()` finds it.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from enum import Enum
from typing import Any

log = logging.getLogger(__name__)

PROBE_EVERY_S = 2.0
PROBE_TIMEOUT_S = 3.0
# Ray's own default for `gcs_rpc_server_reconnect_timeout_s`: a GCS away this long is not coming back.
REINIT_AFTER_S = 60.0
BACKOFF_MAX_S = 30.0

_current: RayDriver | None = None


class Probe(Enum):
    OK = "ok"
    NO_REGISTRY = "no registry"
    FRESH_CLUSTER = "a new cluster answers at the address"
    UNREACHABLE = "the GCS does not answer"


class RayDriver:
    """Watches this process's Ray driver and connects it again when its cluster is gone for good."""

    def __init__(
        self,
        connect: Callable[[], None],
        ensure: Callable[[], None],
        lookup: Callable[[], Any],
        *,
        probe_every_s: float = PROBE_EVERY_S,
        probe_timeout_s: float = PROBE_TIMEOUT_S,
        reinit_after_s: float = REINIT_AFTER_S,
        backoff_max_s: float = BACKOFF_MAX_S,
    ) -> None:
        self._connect = connect
        self._ensure = ensure
        self._lookup = lookup  # a GCS lookup of the registry: its handle, or None when it has none
        self._probe_every_s = probe_every_s
        self._probe_timeout_s = probe_timeout_s
        self._reinit_after_s = reinit_after_s
        self._backoff_max_s = backoff_max_s
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._pending: Future[Probe] | None = None
        self._probing = threading.Lock()
        self._down_since: float | None = None
        self._connected = True
        self._verdict: Probe | None = None  # of the last probe
        self._generation = 0
        self.reconnects = 0

    @property
    def connected(self) -> bool:
        """False while the driver is being connected again: actor calls answer 503 meanwhile."""
        return self._connected

    def healthy(self) -> bool:
        """Connected, and a probe now (shared with the loop's) reaches the cluster: what /health reports."""
        return self._connected and self._probe() in (Probe.OK, Probe.NO_REGISTRY)

    @property
    def generation(self) -> int:
        """Changes each time the driver connected again (actor handles of an older one are stale)."""
        return self._generation

    def start(self) -> None:
        log.info(
            "watching the Ray driver (a GCS away > %.0fs, or a new cluster: connect again)",
            self._reinit_after_s,
        )
        self._thread = threading.Thread(target=self._run, name="ray-driver", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)

    # ------------------------------------------------------------------ the loop

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._step()
            except Exception:
                log.exception("Ray driver supervision step failed; next one in %.0fs", self._probe_every_s)
            self._stopping.wait(self._probe_every_s)

    def _step(self) -> None:
        import ray

        if not ray.is_initialized():
            self._reconnect("the driver is not connected")
            return
        verdict = self._verdict = self._probe()
        if verdict is Probe.OK:
            if self._down_since is not None:
                log.info("the Ray cluster answers again")
            self._down_since = None
        elif verdict is Probe.NO_REGISTRY:
            # Ray's lookup also says "no such actor" when a fresh cluster refuses it: creating tells.
            self._down_since = None
            log.warning("the session registry is missing from the Ray cluster; creating it")
            try:
                self._ensure()
            except Exception as err:
                self._verdict = _verdict(err)
                if self._verdict is not Probe.FRESH_CLUSTER:
                    raise
                self._reconnect(Probe.FRESH_CLUSTER.value)
        elif verdict is Probe.FRESH_CLUSTER:
            self._reconnect(verdict.value)
        else:
            now = time.monotonic()
            if self._down_since is None:
                self._down_since = now
                log.warning("the Ray GCS does not answer; waiting up to %.0fs for it", self._reinit_after_s)
            elif now - self._down_since >= self._reinit_after_s:
                self._reconnect(f"the GCS has not answered for {now - self._down_since:.0f}s")

    def _probe(self) -> Probe:
        with self._probing:  # the loop and /health share one probe: at most one GCS call in flight
            pending = self._pending
            if pending is None or pending.done():
                pending = self._pending = Future()
                threading.Thread(
                    target=self._settle, args=(pending,), name="ray-driver-probe", daemon=True
                ).start()
        try:
            return pending.result(timeout=self._probe_timeout_s)
        except FutureTimeout:
            return Probe.UNREACHABLE

    def _settle(self, future: Future[Probe]) -> None:
        try:
            found = self._lookup()
        except Exception as err:
            future.set_result(_verdict(err))
            return
        future.set_result(Probe.OK if found is not None else Probe.NO_REGISTRY)

    def _reconnect(self, why: str) -> None:
        """Shut the driver down and connect it again, with backoff, until it works or we stop."""
        import ray

        self._connected = False
        self._verdict = None
        log.warning("reconnecting the Ray driver: %s", why)
        started = time.monotonic()
        delay = 1.0
        while not self._stopping.is_set():
            try:
                ray.shutdown()
                self._connect()
                self._ensure()
                break
            except Exception as err:
                log.warning(
                    "Ray driver: connecting failed (%s); next try in %.0fs", type(err).__name__, delay
                )
                self._stopping.wait(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, self._backoff_max_s)
        else:
            return
        self._pending = None
        self._down_since = None
        self._generation += 1
        self.reconnects += 1
        self._connected = True
        log.info("Ray driver connected again in %.1fs", time.monotonic() - started)


def _verdict(err: Exception) -> Probe:
    """A GCS that answers with another cluster's id is a fresh head; any other failure is "unreachable"."""
    return Probe.FRESH_CLUSTER if "WrongClusterID" in str(err) else Probe.UNREACHABLE


def current() -> RayDriver | None:
    """The supervisor of this process's driver, if the process owns one (the `whatsapp-bridge` run)."""
    return _current


@contextmanager
def supervised(driver: RayDriver) -> Iterator[RayDriver]:
    """Run `driver` for the block and make it this process's `current()` one."""
    global _current
    _current = driver
    driver.start()
    try:
        yield driver
    finally:
        driver.stop()
        _current = None
