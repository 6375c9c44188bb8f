"""A session's heartbeat: how the API knows from PostgreSQL alone whether the process is up and connected.

While its process runs, a session renews its `session_heartbeat` row every `interval_s`, each beat good
for `TTL_BEATS × interval_s` by the database's clock (the nodes' clocks never matter), and at once
whenever what it shows changes: whether it holds the WhatsApp connection, the QR code, the pairing code.
The API reads the row with the session's (`persistence.reads`): `live` is "the last beat has not run out
and said connected". A process that dies without a word (SIGKILL, node lost) stops being live when its
last beat runs out, or sooner when its successor boots and beats "not connected"; a process that stops
on purpose deletes the row first.

Best effort and never in the way: nothing waits for a beat; a beat that fails (the database away) is
logged once and tried again at the next interval, while the last one runs out.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime

from actors.ports import BeatStore
from actors.tasks import TaskGroup

log = logging.getLogger(__name__)

TTL_BEATS = 3  # a beat lasts this many intervals: one or two lost beats do not make a session look down
STOP_TIMEOUT_S = 2.0


@dataclass(frozen=True, slots=True)
class Beat:
    """What the process shows now."""

    connected: bool
    qr: str | None = None
    qr_expires_at: datetime | None = None
    pairing_code: str | None = None


class Heartbeat:
    """Writes the latest `Beat` at once and renews it every `interval_s` until `stop()`."""

    def __init__(self, store: BeatStore, tasks: TaskGroup, session_id: str, interval_s: float) -> None:
        self._store = store
        self._tasks = tasks
        self._session_id = session_id
        self._interval_s = interval_s
        self._process = secrets.token_hex(8)  # whose beat the row holds: a stop deletes only its own
        self._latest: Beat | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._failing = False
        self._shown = 0  # changes shown so far
        self._stored = 0  # of them, the last one written
        self._wrote = asyncio.Event()

    @property
    def ttl_s(self) -> float:
        return TTL_BEATS * self._interval_s

    def show(self, beat: Beat) -> None:
        """What the process shows from now on (a change is written at once, coalesced with the next)."""
        if self._stopping or beat == self._latest:
            return
        self._latest = beat
        self._shown += 1
        self._wake.set()
        if self._task is None:
            self._task = self._tasks.spawn(self._run(), "heartbeat")

    async def stored(self, timeout_s: float) -> bool:
        """Wait, at most `timeout_s`, until what shows now is in PostgreSQL (False: not in time)."""
        want = self._shown
        try:
            async with asyncio.timeout(timeout_s):
                while self._stored < want and not self._stopping:
                    self._wrote.clear()
                    await self._wrote.wait()
        except TimeoutError:
            return False
        return self._stored >= want

    async def stop(self) -> None:
        """Stop beating and delete the row (bounded: with the database away the last beat runs out)."""
        self._stopping = True
        self._wake.set()
        task, self._task = self._task, None
        if task is None:
            return
        await asyncio.wait({task}, timeout=STOP_TIMEOUT_S)
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        try:
            await asyncio.wait_for(self._store.end_beat(self._process), STOP_TIMEOUT_S)
        except Exception as err:  # best effort: the last beat runs out by itself
            log.info("session %s: could not end the heartbeat (%s)", self._session_id, type(err).__name__)

    async def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            beat, shown = self._latest, self._shown
            if beat is not None and await self._write(beat):
                self._stored = shown
            self._wrote.set()
            try:
                await asyncio.wait_for(self._wake.wait(), self._interval_s)
            except TimeoutError:
                pass

    async def _write(self, beat: Beat) -> bool:
        try:
            await self._store.beat(
                self._process,
                self.ttl_s,
                connected=beat.connected,
                qr=beat.qr,
                qr_expires_at=beat.qr_expires_at,
                pairing_code=beat.pairing_code,
            )
        except Exception as err:  # the database away, the row deleted: the next beat tries again
            if not self._failing:
                log.warning("session %s: heartbeat not written (%s)", self._session_id, type(err).__name__)
            self._failing = True
            return False
        if self._failing:
            log.info("session %s: heartbeat written again", self._session_id)
        self._failing = False
        return True
