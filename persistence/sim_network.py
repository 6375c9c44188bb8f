"""The simulated network's tables (`wa_sim.device`, `wa_sim.sent`) over one lazily opened connection."""

from __future__ import annotations

import json
import logging
import random
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg

from kernel.errors import ClientError
from kernel.ids import USER_SERVER
from kernel.simulated import Device, SentMessage, sent_type
from persistence.connection import DatabaseUnreachable, OneConnection

log = logging.getLogger(__name__)

T = TypeVar("T")

_SENT_COLUMNS = (
    'message_id, "to", type, mimetype, ptt, size, seconds, file_name, text, quoted_id, data, content'
)


async def forget_session(conn: Any, session_id: uuid.UUID) -> None:
    """Delete a session's devices and everything it sent, on an asyncpg connection (also the API's, on
    `DELETE /sessions/{id}`: `persistence.repo.delete_session`)."""
    await conn.execute("DELETE FROM wa_sim.device WHERE session_id = $1", session_id)
    await conn.execute("DELETE FROM wa_sim.sent WHERE session_id = $1", session_id)


class SimStore:
    """The device and sent rows of one session. One connection at most: it shares the process's budget."""

    def __init__(self, dsn: str, session_id: str) -> None:
        self._sid = session_id
        self._uuid = uuid.UUID(session_id)
        # Names the connection in pg_stat_activity (at most 63 bytes: "wa_sim " + a UUID fits).
        self.app_name = f"wa_sim {session_id}"
        self._db = OneConnection(dsn, application_name=self.app_name, label=f"session {session_id} (wa_sim)")

    async def _run(self, op: Callable[[Any], Awaitable[T]]) -> T:
        try:
            return await self._db.run(op)
        except DatabaseUnreachable as err:
            raise ClientError("the simulated network's database is unreachable") from err
        except asyncpg.PostgresError as err:
            raise ClientError("the simulated network's database failed") from err

    async def close(self) -> None:
        """Close the connection if one is open; the next call opens a new one."""
        await self._db.close(timeout_s=2.0)

    async def device(self, jid: str) -> Device | None:
        row = await self._run(
            lambda c: c.fetchrow("SELECT jid, phone, push_name FROM wa_sim.device WHERE jid = $1", jid)
        )
        return None if row is None else Device(row["jid"], row["phone"], row["push_name"])

    async def add_device(self, digits: str, push_name: str | None) -> str:
        """Link a new device of phone `digits` to this session: `<digits>:<1..99>@s.whatsapp.net`."""

        async def insert(c: Any) -> str | None:
            used = {
                r["jid"]
                for r in await c.fetch("SELECT jid FROM wa_sim.device WHERE jid LIKE $1", f"{digits}:%")
            }
            free = [n for n in range(1, 100) if f"{digits}:{n}@{USER_SERVER}" not in used]
            if not free:
                raise ClientError(f"phone +{digits} already has 99 linked devices")
            jid = f"{digits}:{random.choice(free)}@{USER_SERVER}"
            status = await c.execute(
                "INSERT INTO wa_sim.device (jid, session_id, phone, push_name) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT (jid) DO NOTHING",
                jid,
                self._uuid,
                f"+{digits}",
                push_name,
            )
            return jid if status.endswith(" 1") else None

        for _ in range(5):
            jid = await self._run(insert)
            if jid is not None:
                return jid
        raise ClientError("could not allocate a device number")

    async def delete_devices(self) -> int:
        """Delete this session's devices; how many there were."""
        status = await self._run(
            lambda c: c.execute("DELETE FROM wa_sim.device WHERE session_id = $1", self._uuid)
        )
        return int(status.split()[-1])

    async def forget(self) -> None:
        """Delete this session's devices and everything it sent, in one transaction."""

        async def purge(c: Any) -> None:
            async with c.transaction():
                await forget_session(c, self._uuid)

        await self._run(purge)

    async def record_sent(self, sent: SentMessage) -> None:
        await self._run(
            lambda c: c.execute(
                f"INSERT INTO wa_sim.sent (session_id, {_SENT_COLUMNS})"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                self._uuid,
                sent.message_id,
                sent.to,
                str(sent.type),
                sent.mimetype,
                sent.ptt,
                sent.size,
                sent.seconds,
                sent.file_name,
                sent.text,
                sent.quoted_id,
                sent.data,
                None if sent.content is None else json.dumps(sent.content),
            )
        )

    async def sent(self) -> list[SentMessage]:
        rows = await self._run(
            lambda c: c.fetch(
                f"SELECT {_SENT_COLUMNS} FROM wa_sim.sent WHERE session_id = $1 ORDER BY seq",
                self._uuid,
            )
        )
        return [
            SentMessage(
                message_id=r["message_id"],
                to=r["to"],
                type=sent_type(r["type"]),
                mimetype=r["mimetype"],
                ptt=r["ptt"],
                size=r["size"],
                seconds=r["seconds"],
                file_name=r["file_name"],
                text=r["text"],
                quoted_id=r["quoted_id"],
                data=r["data"],
                content=None if r["content"] is None else json.loads(r["content"]),
            )
            for r in rows
        ]

    async def sent_data(self, message_id: str) -> bytes | None:
        """The bytes of a file this session sent (None if no such message or it carried no file)."""
        data = await self._run(
            lambda c: c.fetchval(
                "SELECT data FROM wa_sim.sent WHERE session_id = $1 AND message_id = $2",
                self._uuid,
                message_id,
            )
        )
        return bytes(data) if data is not None else None
