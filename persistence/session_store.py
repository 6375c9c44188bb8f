"""The store a session's actor uses: its `whatsapp_session` row, chats and messages.

Import-light on purpose (every session is its own process): asyncpg, the stdlib and `kernel.domain`,
`kernel.errors`, `kernel.events` only; no SQLAlchemy, SQLModel or pydantic. The row decoders (in
`persistence.rows`) are shared with `persistence.repo` so both sides read chats and messages the same
way; the chat and message operations are in `persistence.inbox_store`.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from datetime import datetime
from types import TracebackType
from typing import Any, Self, TypeVar

import asyncpg

from kernel.domain import Reason, SessionStatus
from kernel.errors import LeaseLost, PhoneAlreadyPaired, ServiceUnavailable, SessionNotFound
from kernel.proxy import stored_proxy
from kernel.stored import StoredSession
from persistence.chat_people import ChatPeople
from persistence.connection import DatabaseUnreachable, OneConnection
from persistence.inbox_store import InboxStore, purge_inbox
from persistence.rows import (  # re-exported: importers of the store's names keep working
    MAX_PAGE,
    MESSAGE_COLUMNS,
    chat_from_row,
    decode_cursor,
    encode_cursor,
    media_from_json,
    media_to_json,
    message_from_row,
    session_view_from_row,
    utc,
)
from persistence.send_records import SendRecords

__all__ = [
    "MAX_PAGE",
    "MESSAGE_COLUMNS",
    "SessionStore",
    "StoredSession",
    "chat_from_row",
    "decode_cursor",
    "encode_cursor",
    "media_from_json",
    "media_to_json",
    "message_from_row",
    "session_view_from_row",
]

log = logging.getLogger(__name__)

LEASE_LOCK_WAIT_S = 2.0  # how long a take waits for the holder's call in progress before trying later

T = TypeVar("T")


# --- the session row ---------------------------------------------------------------------------------------


def _pg_dsn(dsn: str) -> str:
    # asyncpg wants the libpq scheme; accept SQLAlchemy-style URLs without importing kernel.settings.
    return re.sub(r"^postgres(?:ql)?\+\w+://", "postgresql://", dsn)


class SessionStore:
    """One session's persistent state, on asyncpg with raw SQL.

    Connection budget: a store holds at most ONE PostgreSQL connection, ever. It opens lazily on the
    first call and serves every call in turn (a lock serialises them; a connection runs one query at a
    time anyway). When the connection is lost it is discarded before a new one is opened and the call is
    retried once (every operation here is idempotent); if that fails too, or the database cannot be
    reached, the call raises `ServiceUnavailable`. So a fleet of N sessions costs N connections here,
    plus whatsmeow's own pool. `application_name` (default `wa-session-<id>`) makes them visible in
    `pg_stat_activity`.

    A missing session row (the session was deleted) raises `SessionNotFound` from every write.
    """

    def __init__(
        self,
        dsn: str,
        session_id: str,
        *,
        application_name: str | None = None,
        connect_timeout: float = 10.0,
        command_timeout: float = 30.0,
    ) -> None:
        self.session_id = str(uuid.UUID(session_id))
        self._sid = uuid.UUID(session_id)
        self._db = OneConnection(
            _pg_dsn(dsn),
            application_name=application_name or f"wa-session-{self.session_id}",
            label=f"session {self.session_id}",
            connect_timeout=connect_timeout,
            command_timeout=command_timeout,
        )
        # Its parts, each over the one connection: chats and messages, chats' people, send records.
        self.inbox = InboxStore(self._run, self._sid)
        self.people = ChatPeople(self._run, self._sid)
        self.send_records = SendRecords(self._run, self._sid)
        self._generation: int | None = None  # the lease this process holds: every call is fenced by it
        # The lease's lock (`_fenced`): one 64-bit key per session.
        self._lease_key = int.from_bytes(self._sid.bytes[:8], "big", signed=True)
        # The connection of `in_one_transaction` in progress, for the task running it only.
        self._open: ContextVar[Any] = ContextVar(f"transaction {self.session_id}", default=None)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection (the store reopens one if used again)."""
        await self._db.close()

    async def in_one_transaction(self, body: Callable[[], Awaitable[T]]) -> T:
        """What `body` returns, with every call it makes to this store in one transaction: all or none.

        Fenced once, as a single call is (LeaseLost before anything is written). Other tasks' calls wait
        until it ends (the store's one connection). If the connection is lost, `body` runs again once,
        on a new one.
        """

        async def op(conn: Any) -> T:
            opened = self._open.set(conn)
            try:
                if self._generation is None:
                    async with conn.transaction():
                        return await body()
                return await body()  # in the fenced transaction `_run` opened
            finally:
                self._open.reset(opened)

        return await self._run(op)

    async def _run(self, op: Callable[[Any], Awaitable[T]], *, fenced: bool = True) -> T:
        conn = self._open.get()
        if conn is not None:  # within `in_one_transaction`: its connection, already fenced
            try:
                return await op(conn)
            except asyncpg.ForeignKeyViolationError as err:
                raise SessionNotFound() from err
        generation = self._generation
        if fenced and generation is not None:
            op = self._fenced(op, generation)
        try:
            return await self._db.run(op)
        except asyncpg.ForeignKeyViolationError as err:
            raise SessionNotFound() from err
        except DatabaseUnreachable as err:
            raise ServiceUnavailable(str(err)) from err

    def _fenced(self, op: Callable[[Any], Awaitable[T]], generation: int) -> Callable[[Any], Awaitable[T]]:
        """`op` in a transaction that first checks the lease is still `generation` (LeaseLost if not).

        The check holds the lease's lock shared until the commit and a take holds it exclusively, so no
        call of an older generation commits after a take. An advisory lock, not `FOR SHARE`: reads keep
        working while the database is read-only.
        """

        async def fenced(conn: Any) -> T:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock_shared($1)", self._lease_key)
                held = await conn.fetchval(
                    "SELECT generation FROM session_lease WHERE session_id = $1", self._sid
                )
                if held is None:
                    raise SessionNotFound()  # the session was deleted (its lease with it)
                if held != generation:
                    raise LeaseLost()
                return await op(conn)

        return fenced

    async def _update_row(self, sql: str, *args: Any) -> None:
        async def op(conn: Any) -> Any:
            return await conn.fetchval(sql, self._sid, *args)

        if await self._run(op) is None:
            raise SessionNotFound()

    # --- the session row ---

    async def load(self) -> StoredSession | None:
        """The session's row, or None when it no longer exists."""

        async def op(conn: Any) -> Any:
            return await conn.fetchrow(
                "SELECT s.id, s.user_id, s.slot, s.status, s.reason, s.phone, s.display_name,"
                " s.profile_pic_url, s.last_seen, s.device_jid, s.qr_rounds, s.connect_failures, s.proxy_url,"
                " p.password AS proxy_password FROM whatsapp_session s"
                " LEFT JOIN session_proxy_secret p ON p.session_id = s.id WHERE s.id = $1",
                self._sid,
            )

        row = await self._run(op)
        if row is None:
            return None
        return StoredSession(
            view=session_view_from_row(row),
            device_jid=row["device_jid"],
            qr_rounds=row["qr_rounds"],
            connect_failures=row["connect_failures"],
            proxy=stored_proxy(row["proxy_url"], row["proxy_password"]),
        )

    async def save_state(self, status: SessionStatus, reason: Reason | None = None) -> None:
        """Record the session's status and reason."""
        await self._update_row(
            "UPDATE whatsapp_session SET status = $2, reason = $3, updated_at = now()"
            " WHERE id = $1 RETURNING 1",
            status.value,
            reason.value if reason is not None else None,
        )

    async def save_profile(
        self,
        *,
        phone: str | None = None,
        display_name: str | None = None,
        profile_pic_url: str | None = None,
        device_jid: str | None = None,
    ) -> bool:
        """Record what pairing or login told us; None keeps the stored value.

        A pairing (`device_jid`) by a phone other than the one last linked starts the slot afresh: the
        previous number's chats, messages, pictures and send records are deleted in the same transaction
        (DESIGN.md, "A slot belongs to its phone"); returns True then. Raises `PhoneAlreadyPaired` when
        another linked session holds `phone` (nothing is written, nothing deleted).
        """

        async def op(conn: Any) -> bool:
            async with conn.transaction():
                previous = await conn.fetchrow(
                    "SELECT phone FROM whatsapp_session WHERE id = $1 FOR UPDATE", self._sid
                )
                if previous is None:
                    raise SessionNotFound()
                linking = device_jid is not None and phone is not None
                afresh = linking and previous["phone"] not in (None, phone)
                if afresh:
                    await purge_inbox(conn, self._sid)
                await conn.execute(
                    "UPDATE whatsapp_session SET phone = COALESCE($2, phone),"
                    " display_name = CASE WHEN $6 THEN $3 ELSE COALESCE($3, display_name) END,"
                    " profile_pic_url = CASE WHEN $6 THEN $4 ELSE COALESCE($4, profile_pic_url) END,"
                    " device_jid = COALESCE($5, device_jid), updated_at = now() WHERE id = $1",
                    self._sid,
                    phone,
                    display_name,
                    profile_pic_url,
                    device_jid,
                    afresh,
                )
                return afresh

        try:
            return await self._run(op)
        except asyncpg.UniqueViolationError as err:
            raise PhoneAlreadyPaired(phone=phone) from err

    async def clear_device(self) -> None:
        """Forget the device (logged out): its JID, so the number can be paired anywhere. The phone stays,
        so the user can be told which phone to scan to keep this number's chats."""
        await self._update_row(
            "UPDATE whatsapp_session SET device_jid = NULL, updated_at = now() WHERE id = $1 RETURNING 1"
        )

    async def set_counters(
        self, *, qr_rounds: int | None = None, connect_failures: int | None = None
    ) -> None:
        """Record pairing rounds used and failed dials in a row; None keeps the stored value."""
        await self._update_row(
            "UPDATE whatsapp_session SET qr_rounds = COALESCE($2, qr_rounds),"
            " connect_failures = COALESCE($3, connect_failures) WHERE id = $1 RETURNING 1",
            qr_rounds,
            connect_failures,
        )

    async def set_qr_rounds(self, rounds: int) -> None:
        """Record how many pairing rounds were used since the last pairing request."""
        await self.set_counters(qr_rounds=rounds)

    async def touch_last_seen(self, at: datetime | None = None) -> datetime:
        """Set `last_seen` to `at` (default now) unless it is already later; the time stored."""

        async def op(conn: Any) -> Any:
            return await conn.fetchval(
                "UPDATE whatsapp_session SET last_seen = GREATEST(last_seen, COALESCE($2, now()))"
                " WHERE id = $1 RETURNING last_seen",
                self._sid,
                at,
            )

        last_seen = await self._run(op)
        if last_seen is None:
            raise SessionNotFound()
        return utc(last_seen)

    # --- the heartbeat: what the API says of the process (`actors.heartbeat`) ---

    async def beat(
        self,
        process: str,
        ttl_s: float,
        *,
        connected: bool,
        qr: str | None = None,
        qr_expires_at: datetime | None = None,
        pairing_code: str | None = None,
    ) -> None:
        """Say that this process is up for `ttl_s` more seconds (database clock), and what it shows."""

        async def op(conn: Any) -> None:
            await conn.execute(
                "INSERT INTO session_heartbeat (session_id, beat_until, connected, qr, qr_expires_at,"
                " pairing_code, process) VALUES ($1, now() + make_interval(secs => $2), $3, $4, $5, $6, $7)"
                " ON CONFLICT (session_id) DO UPDATE SET beat_until = EXCLUDED.beat_until,"
                " process = EXCLUDED.process,"
                " connected = EXCLUDED.connected, qr = EXCLUDED.qr, qr_expires_at = EXCLUDED.qr_expires_at,"
                " pairing_code = EXCLUDED.pairing_code",
                self._sid,
                ttl_s,
                connected,
                qr,
                utc(qr_expires_at) if qr_expires_at is not None else None,
                pairing_code,
                process,
            )

        await self._run(op)

    async def end_beat(self, process: str) -> None:
        """Say that this process is going away (unless another one beats already)."""

        async def op(conn: Any) -> None:
            await conn.execute(
                "DELETE FROM session_heartbeat WHERE session_id = $1 AND process = $2", self._sid, process
            )

        await self._run(op)

    # --- the lease: which process may hold the connection (`actors.lease`) ---

    async def take_lease(self, owner: str, ttl_s: float) -> int | None:
        """Take the lease if it is free, has run out, or is `owner`'s (an earlier process of the same
        actor): its new generation, which fences every later call; None while another owner holds it.
        SessionNotFound once the session is gone."""

        async def op(conn: Any) -> Any:
            async with conn.transaction():
                # A holder in the middle of a call (or stopped there): try again later, not wait forever.
                await conn.execute(f"SET LOCAL lock_timeout = {int(LEASE_LOCK_WAIT_S * 1000)}")
                await conn.execute("SELECT pg_advisory_xact_lock($1)", self._lease_key)
                return await conn.fetchval(
                    "INSERT INTO session_lease AS l (session_id, generation, owner, expires_at)"
                    " VALUES ($1, 1, $2, now() + make_interval(secs => $3))"
                    " ON CONFLICT (session_id) DO UPDATE SET generation = l.generation + 1,"
                    " owner = EXCLUDED.owner, expires_at = EXCLUDED.expires_at"
                    " WHERE l.owner = EXCLUDED.owner OR l.expires_at <= now()"
                    " RETURNING generation",
                    self._sid,
                    owner,
                    ttl_s,
                )

        try:
            generation = await self._run(op, fenced=False)
        except asyncpg.LockNotAvailableError:
            return None
        if generation is not None:
            self._generation = int(generation)
        return self._generation if generation is not None else None

    async def renew_lease(self, ttl_s: float) -> None:
        """Extend the lease this process holds by `ttl_s` from now (LeaseLost if another took it)."""
        if self._generation is None:
            raise LeaseLost()

        async def op(conn: Any) -> None:
            await conn.execute(
                "UPDATE session_lease SET expires_at = now() + make_interval(secs => $2)"
                " WHERE session_id = $1",
                self._sid,
                ttl_s,
            )

        await self._run(op)

    async def release_lease(self) -> None:
        """Let another process take the lease now (if this one still holds it)."""
        generation = self._generation
        if generation is None:
            return

        async def op(conn: Any) -> None:
            await conn.execute(
                "UPDATE session_lease SET expires_at = now() WHERE session_id = $1 AND generation = $2",
                self._sid,
                generation,
            )

        await self._run(op, fenced=False)
