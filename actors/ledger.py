"""Idempotent sends: an `Idempotency-Key` (per user, kept 24 h) makes a retried send return the first
result instead of sending again.

Invariants:
- A key is recorded as started (outcome unknown) in the journal *before* the send reaches the client, and
  completed with the message id once WhatsApp accepted it; both are durable at once (the session's spool)
  and reach PostgreSQL when it answers.
- A retry while the first attempt is still running waits for that attempt's result.
- A retry of a send whose outcome is unknown (the process died during it, or the client timed out) raises
  `SendOutcomeUnknown` (504): never a second send. A send that definitely failed (not connected, refused
  by WhatsApp, bad input) forgets its key, so the retry sends.
- The same key with a different request raises `IdempotencyKeyReused` (422).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from actors.ports import SendRecordsPort
from actors.writes import DropSendRecord, SaveSendRecord, Write
from kernel.domain import SendResult
from kernel.errors import ClientTimeout, IdempotencyKeyReused, SendOutcomeUnknown, WaError
from kernel.stored import KEEP_HOURS, SendRecord

log = logging.getLogger(__name__)

MAX_KEYS = 20_000
LOOKUP_TIMEOUT_S = 2.0


def fingerprint(*parts: Any) -> str:
    """A stable digest of what a send asks for (bytes are hashed, the rest is repr'd)."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part if isinstance(part, bytes) else repr(part).encode())
        digest.update(b"\x00")
    return digest.hexdigest()


class SendLedger:
    def __init__(self, session_id: str, records: SendRecordsPort, write: Callable[[Write], None]) -> None:
        self._session_id = session_id
        self._records = records
        self._write = write  # the session's journal: durable at once
        self._user_id: str | None = None
        self._known: dict[str, tuple[float, SendRecord]] = {}
        self._inflight: dict[str, asyncio.Future[SendResult]] = {}

    async def load(self, user_id: str) -> None:
        """Remember the user's recent keys (the database answers: the session is booting)."""
        self._user_id = user_id
        now = time.monotonic()
        for record in await self._records.recent(user_id):
            self._known[record.key] = (now, record)

    async def run(
        self, key: str | None, request: tuple[Any, ...], send: Callable[[], Awaitable[SendResult]]
    ) -> SendResult:
        """`send()` once per key; `request` (what the send asks for) is hashed only when there is a key."""
        if key is None or self._user_id is None:
            return await send()
        digest = fingerprint(*request)
        running = self._inflight.get(key)
        if running is not None:
            result = await asyncio.shield(running)
            self._check(key, digest)
            return result
        future: asyncio.Future[SendResult] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_consume)
        self._inflight[key] = future
        try:
            result = await self._run_once(key, digest, send)
        except BaseException as err:
            future.set_exception(err if isinstance(err, Exception) else SendOutcomeUnknown())
            raise
        else:
            future.set_result(result)
            return result
        finally:
            self._inflight.pop(key, None)

    async def _run_once(self, key: str, digest: str, send: Callable[[], Awaitable[SendResult]]) -> SendResult:
        record = await self._lookup(key)
        if record is not None:
            if record.fingerprint != digest:
                raise IdempotencyKeyReused()
            if record.message_id is None or record.sent_at is None:
                raise SendOutcomeUnknown()
            return SendResult(id=record.message_id, timestamp=record.sent_at)
        started = SendRecord(key, self._session_id, digest, None, None)
        self._remember(started)
        try:
            result = await send()
        except (ClientTimeout, SendOutcomeUnknown, asyncio.CancelledError) as err:
            log.warning(
                "session %s: send with a key ended unknown (%s)", self._session_id, type(err).__name__
            )
            if isinstance(err, ClientTimeout):
                raise SendOutcomeUnknown() from err
            raise
        except WaError:
            self._forget(key)  # definitely not sent: the retry may send
            raise
        self._remember(SendRecord(key, self._session_id, digest, result.id, result.timestamp))
        return result

    def _check(self, key: str, digest: str) -> None:
        found = self._known.get(key)
        if found is not None and found[1].fingerprint != digest:
            raise IdempotencyKeyReused()

    async def _lookup(self, key: str) -> SendRecord | None:
        found = self._known.get(key)
        if found is not None:
            if time.monotonic() - found[0] < KEEP_HOURS * 3600:
                return found[1]
            del self._known[key]
        assert self._user_id is not None
        try:  # made by another of the user's sessions since we loaded (best effort: never blocks a send)
            return await asyncio.wait_for(self._records.get(self._user_id, key), LOOKUP_TIMEOUT_S)
        except (WaError, TimeoutError):
            return None

    def _remember(self, record: SendRecord) -> None:
        assert self._user_id is not None
        self._write(SaveSendRecord(self._user_id, record))
        self._known[record.key] = (time.monotonic(), record)
        while len(self._known) > MAX_KEYS:
            del self._known[next(iter(self._known))]

    def _forget(self, key: str) -> None:
        assert self._user_id is not None
        self._write(DropSendRecord(self._user_id, key))
        self._known.pop(key, None)


def _consume(future: asyncio.Future[SendResult]) -> None:
    if not future.cancelled():
        future.exception()  # retrieved: nobody waiting on it must not log "never retrieved"
