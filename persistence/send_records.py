"""Send records (`send_record`): what a send with an Idempotency-Key returned, kept 24 h per user.

Used by a session's store (one asyncpg connection, see `persistence.session_store`). asyncpg and the
stdlib only: every session process imports this.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC
from typing import Any, TypeVar

from kernel.stored import KEEP_HOURS, SendRecord

T = TypeVar("T")

Runner = Callable[[Callable[[Any], Awaitable[Any]]], Awaitable[Any]]


def _record(row: Any) -> SendRecord:
    sent_at = row["sent_at"]
    return SendRecord(
        key=row["key"],
        session_id=str(row["session_id"]),
        fingerprint=row["fingerprint"],
        message_id=row["message_id"],
        sent_at=sent_at.astimezone(UTC) if sent_at is not None else None,
    )


class SendRecords:
    def __init__(self, run: Runner, session_id: uuid.UUID) -> None:
        self._run = run
        self._sid = session_id

    async def recent(self, user_id: str) -> list[SendRecord]:
        """The user's records of the last 24 h (older ones are deleted on the way)."""

        async def op(conn: Any) -> list[Any]:
            await conn.execute(
                "DELETE FROM send_record WHERE user_id = $1"
                f" AND created_at < now() - interval '{KEEP_HOURS} hours'",
                user_id,
            )
            return list(
                await conn.fetch(
                    "SELECT key, session_id, fingerprint, message_id, sent_at FROM send_record"
                    " WHERE user_id = $1",
                    user_id,
                )
            )

        return [_record(row) for row in await self._run(op)]

    async def get(self, user_id: str, key: str) -> SendRecord | None:
        async def op(conn: Any) -> Any:
            return await conn.fetchrow(
                "SELECT key, session_id, fingerprint, message_id, sent_at FROM send_record"
                f" WHERE user_id = $1 AND key = $2 AND created_at >= now() - interval '{KEEP_HOURS} hours'",
                user_id,
                key,
            )

        row = await self._run(op)
        return _record(row) if row is not None else None

    async def save(self, user_id: str, record: SendRecord) -> None:
        """Insert or complete a record; a known outcome is never replaced by an unknown one."""

        async def op(conn: Any) -> None:
            await conn.execute(
                "INSERT INTO send_record (user_id, key, session_id, fingerprint, message_id, sent_at)"
                " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (user_id, key) DO UPDATE SET"
                " message_id = COALESCE(EXCLUDED.message_id, send_record.message_id),"
                " sent_at = COALESCE(EXCLUDED.sent_at, send_record.sent_at)",
                user_id,
                record.key,
                self._sid,
                record.fingerprint,
                record.message_id,
                record.sent_at,
            )

        await self._run(op)

    async def delete(self, user_id: str, key: str) -> None:
        """Forget a key whose send definitely failed (only this session's own record)."""

        async def op(conn: Any) -> None:
            await conn.execute(
                "DELETE FROM send_record WHERE user_id = $1 AND key = $2 AND session_id = $3",
                user_id,
                key,
                self._sid,
            )

        await self._run(op)
