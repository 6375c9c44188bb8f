"""The two questions we ask whatsmeow's own tables directly (asyncpg on the auth DSN, whose search_path
points at the `whatsmeow` schema): does a device row exist, and delete one.

`whatsmeow_device.jid` is the device JID `user:device@s.whatsapp.net`; every other whatsmeow table
references it with ON DELETE CASCADE, so deleting the row deletes the device's keys and sessions.
"""

from __future__ import annotations

import asyncpg

DB_TIMEOUT_S = 10.0


async def device_exists(dsn: str, device_jid: str) -> bool:
    """Whether whatsmeow still holds `device_jid` (resuming one it does not hold segfaults the process)."""
    conn = await asyncpg.connect(dsn, timeout=DB_TIMEOUT_S)
    try:
        return bool(await conn.fetchval("SELECT 1 FROM whatsmeow_device WHERE jid = $1", device_jid))
    except asyncpg.UndefinedTableError:
        return False  # whatsmeow never ran against this store
    finally:
        await conn.close()


async def delete_device(dsn: str, device_jid: str) -> None:
    conn = await asyncpg.connect(dsn, timeout=DB_TIMEOUT_S)
    try:
        await conn.execute("DELETE FROM whatsmeow_device WHERE jid = $1", device_jid)
    except asyncpg.UndefinedTableError:
        pass
    finally:
        await conn.close()
