"""Idempotent sends: an `Idempotency-Key` (per user, kept 24 h) makes a retried send return the first
result instead of sending again.

Invariants:
- A key binds the user, the session and the request: the same key on another of the user's sessions, or
  with a different request, raises `IdempotencyKeyReused` (422), at once or concurrently.
- Before a key's first send, the key is claimed in PostgreSQL (`SendRecords.claim`), which is what the
  user's sessions share. A key this session forgot is claimed only once its journal is applied (the
  forgetting reached PostgreSQL first). While PostgreSQL cannot answer within `CLAIM_TIMEOUT_S`, the
  session decides alone from its own keys: a key another session took meanwhile can then go out from both.
- A key is recorded as started (outcome unknown) in the journal *before* the send reaches the client, and
  completed with the message id once WhatsApp accepted it; both are durable at once (the session's spool)
  and reach PostgreSQL when it answers.
- A retry while the first attempt is still running waits for that attempt's result.
- A retry of a send whose outcome is unknown (the process died during it, or the client timed out) raises
  `SendOutcomeUnknown` (504): never a second send. A send that definitely failed (not connected, refused
  by WhatsApp, bad input) forgets its key, so the retry sends.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from actors.journal import Journal
from actors.ports import SendRecordsPort
from actors.writes import DropSendRecord, SaveSendRecord
from kernel.domain import SendResult
from kernel.errors import ClientTimeout, IdempotencyKeyReused, SendOutcomeUnknown, WaError
from kernel.stored import KEEP_HOURS, SendRecord

log = logging.getLogger(__name__)

MAX_KEYS = 20_000
CLAIM_TIMEOUT_S = 2.0


def fingerprint(*parts: Any) -> str:
    """A stable digest of what a send asks for (bytes are hashed, the rest is repr'd)."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part if isinstance(part, bytes) else repr(part).encode())
        digest.update(b"\x00")
    return digest.hexdigest()


@dataclass(slots=True)
class _Running:
    digest: str
    result: asyncio.Future[SendResult]


class SendLedger:
    def __init__(self, session_id: str, records: SendRecordsPort, journal: Journal) -> None:
        self._session_id = session_id
        self._records = records
        self._journal = journal
        self._user_id: str | None = None
        self._known: dict[str, tuple[float, SendRecord]] = {}  # this session's keys
        self._forgotten: dict[str, None] = {}  # dropped in the journal, maybe not yet in PostgreSQL
        self._inflight: dict[str, _Running] = {}

    async def load(self, user_id: str) -> None:
        """Remember this session's recent keys (the database answers: the session is booting)."""
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
            if running.digest != digest:
                raise IdempotencyKeyReused()
            return await asyncio.shield(running.result)
        future: asyncio.Future[SendResult] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_consume)
        self._inflight[key] = _Running(digest, future)
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
        started = SendRecord(key, self._session_id, digest, None, None)
        holder = await self._claim(started)
        if holder is not None:
            if holder.session_id != self._session_id or holder.fingerprint != digest:
                raise IdempotencyKeyReused()
            if holder.message_id is None or holder.sent_at is None:
                raise SendOutcomeUnknown()
            return SendResult(id=holder.message_id, timestamp=holder.sent_at)
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

    async def _claim(self, started: SendRecord) -> SendRecord | None:
        """None if the key is this send's now, else the record that holds it."""
        found = self._known.get(started.key)
        if found is not None:
            if time.monotonic() - found[0] < KEEP_HOURS * 3600:
                return found[1]
            del self._known[started.key]
        assert self._user_id is not None
        if not self._journal.backlog:
            self._forgotten.clear()
        try:
            async with asyncio.timeout(CLAIM_TIMEOUT_S):
                if started.key in self._forgotten:
                    if not await self._journal.wait_drained(CLAIM_TIMEOUT_S):
                        raise TimeoutError
                    del self._forgotten[started.key]
                return await self._records.claim(self._user_id, started)
        except (WaError, TimeoutError):
            log.warning(
                "session %s: the database cannot claim a send's key now; this session decides alone",
                self._session_id,
            )
            return None

    def _remember(self, record: SendRecord) -> None:
        assert self._user_id is not None
        self._journal.write(SaveSendRecord(self._user_id, record))
        self._known[record.key] = (time.monotonic(), record)
        while len(self._known) > MAX_KEYS:
            del self._known[next(iter(self._known))]

    def _forget(self, key: str) -> None:
        assert self._user_id is not None
        self._journal.write(DropSendRecord(self._user_id, key))
        self._known.pop(key, None)
        self._forgotten[key] = None
        while len(self._forgotten) > MAX_KEYS:
            del self._forgotten[next(iter(self._forgotten))]


def _consume(future: asyncio.Future[SendResult]) -> None:
    if not future.cancelled():
        future.exception()  # retrieved: nobody waiting on it must not log "never retrieved"
