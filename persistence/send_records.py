"""Send records (`send_record`): what a send with an Idempotency-Key returned, kept 24 h per user.

A key belongs to one user (primary key `(user_id, key)`) and, once claimed, to one of the user's sessions
and one request (`fingerprint`): `claim` is the one place two sessions meet over a key.

Used by a session's store (one asyncpg connection, see `persistence.session_store`). asyncpg and the
stdlib only: every session process imports this.
"""

from __future__ import annotations

import uuid
from datetime import UTC
from typing import Any, TypeVar

from kernel.stored import KEEP_HOURS, SendRecord
from persistence.connection import Runner

T = TypeVar("T")


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
        """This session's records of the last 24 h (the user's older ones are deleted on the way)."""

        async def op(conn: Any) -> list[Any]:
            await conn.execute(
                "DELETE FROM send_record WHERE user_id = $1"
                f" AND created_at < now() - interval '{KEEP_HOURS} hours'",
                user_id,
            )
            return list(
                await conn.fetch(
                    "SELECT key, session_id, fingerprint, message_id, sent_at FROM send_record"
                    " WHERE user_id = $1 AND session_id = $2",
                    user_id,
                    self._sid,
                )
            )

        return [_record(row) for row in await self._run(op)]

    async def claim(self, user_id: str, record: SendRecord) -> SendRecord | None:
        """Take `record.key` for this session and request: None if taken now, else the record holding it.

        Atomic across sessions and processes: of two claims of one key at once, one inserts and the other
        waits for it and gets its row. A record older than 24 h no longer holds its key.
        """

        async def op(conn: Any) -> Any:
            # The no-op update returns the row that holds the key; xmax = 0 only on a fresh insert.
            return await conn.fetchrow(
                "INSERT INTO send_record (user_id, key, session_id, fingerprint) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT (user_id, key) DO UPDATE SET key = send_record.key"
                " RETURNING key, session_id, fingerprint, message_id, sent_at, xmax = 0 AS claimed,"
                f" created_at < now() - interval '{KEEP_HOURS} hours' AS expired",
                user_id,
                record.key,
                self._sid,
                record.fingerprint,
            )

        async def expire(conn: Any) -> None:
            await conn.execute(
                "DELETE FROM send_record WHERE user_id = $1 AND key = $2"
                f" AND created_at < now() - interval '{KEEP_HOURS} hours'",
                user_id,
                record.key,
            )

        row = await self._run(op)
        if row["expired"]:
            await self._run(expire)
            row = await self._run(op)
        return None if row["claimed"] else _record(row)

    async def save(self, user_id: str, record: SendRecord) -> None:
        """Insert or complete this session's record of a key; a known outcome is never replaced by an unknown
        one, and a key another session or request holds is left as it is."""

        async def op(conn: Any) -> None:
            await conn.execute(
                "INSERT INTO send_record (user_id, key, session_id, fingerprint, message_id, sent_at)"
                " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (user_id, key) DO UPDATE SET"
                " message_id = COALESCE(EXCLUDED.message_id, send_record.message_id),"
                " sent_at = COALESCE(EXCLUDED.sent_at, send_record.sent_at)"
                " WHERE send_record.session_id = EXCLUDED.session_id"
                " AND send_record.fingerprint = EXCLUDED.fingerprint",
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
