"""What the supervisor reads and deletes: the list of sessions that should run, and a session's removal.

asyncpg only (the registry process stays small too). Deleting a session removes its row (chats and
messages cascade) and any device credentials left behind in whatsmeow's or the simulator's store.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from persistence.models import AUTH_SCHEMA, SIM_SCHEMA


@dataclass(frozen=True, slots=True)
class FleetRow:
    session_id: str
    status: str
    device_jid: str | None


async def sessions_to_run(conn: asyncpg.Connection) -> list[FleetRow]:
    """Every session: paired ones first (they reconnect without a scan), oldest first."""
    rows = await conn.fetch(
        "SELECT id::text AS id, status, device_jid FROM whatsapp_session"
        " ORDER BY (device_jid IS NULL), created_at, id"
    )
    return [FleetRow(r["id"], r["status"], r["device_jid"]) for r in rows]


async def delete_session(conn: asyncpg.Connection, session_id: str) -> bool:
    """Delete the row and any leftover device keys; True if the row existed. Idempotent."""
    async with conn.transaction():
        jid = await conn.fetchval(
            "DELETE FROM whatsapp_session WHERE id = $1::uuid RETURNING coalesce(device_jid, '')", session_id
        )
        await conn.execute(f"DELETE FROM {SIM_SCHEMA}.device WHERE session_id = $1::uuid", session_id)
        await conn.execute(f"DELETE FROM {SIM_SCHEMA}.sent WHERE session_id = $1::uuid", session_id)
        if jid and await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f"{AUTH_SCHEMA}.whatsmeow_device"):
            await conn.execute(f"DELETE FROM {AUTH_SCHEMA}.whatsmeow_device WHERE jid = $1", jid)
    return jid is not None
