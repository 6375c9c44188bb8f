"""A database of the test's own on the test server, and real refusals on it: read-only, a failing constraint.

Refusals are set on a database created for the test (never on the shared one: other suites may run on
the same server), migrated like the bridge's, and dropped afterwards.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from kernel.settings import asyncpg_dsn
from persistence.migrate import upgrade

POISON = "poison: the database refuses this text"


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(asyncpg_dsn(url))
    return urlunsplit(parts._replace(path=f"/{name}"))


async def _admin(server_url: str, *statements: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(server_url), timeout=10)
    try:
        for sql in statements:
            await conn.execute(sql)
    finally:
        await conn.close()


def _run(factory: Callable[[], Awaitable[None]]) -> None:
    """On a private loop: fixtures call this from inside pytest-asyncio's running loop too."""

    async def main() -> None:
        await factory()

    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, main()).result()


@contextmanager
def own_database(server_url: str) -> Iterator[str]:
    """A fresh database on the server of `server_url`, migrated to head; dropped afterwards."""
    name = f"wab_refusals_{uuid.uuid4().hex[:10]}"
    _run(lambda: _admin(server_url, f'CREATE DATABASE "{name}"'))
    try:
        url = _with_database(server_url, name)
        upgrade(url)
        yield url
    finally:
        _run(lambda: _admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def set_read_only(server_url: str, database_url: str, on: bool) -> int:
    """`ALTER DATABASE … SET default_transaction_read_only`, then end every connection to it (as a failover
    does); how many were ended. Run from the server's own database: the altered one may refuse it."""
    name = urlsplit(database_url).path.lstrip("/")
    conn = await asyncpg.connect(asyncpg_dsn(server_url), timeout=10)
    try:
        await conn.execute(
            f'ALTER DATABASE "{name}" SET default_transaction_read_only = {"on" if on else "off"}'
        )
        ended: int = await conn.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = $1 AND pid <> pg_backend_pid()",
            name,
        )
        return ended
    finally:
        await conn.close()


async def refuse_poison(database_url: str, on: bool) -> None:
    """A CHECK constraint that refuses one message text (SQLSTATE 23514: a bug, not an outage), or none."""
    sql = (
        f"ALTER TABLE message ADD CONSTRAINT refuse_poison CHECK (text IS DISTINCT FROM '{POISON}') NOT VALID"
        if on
        else "ALTER TABLE message DROP CONSTRAINT IF EXISTS refuse_poison"
    )
    await _admin(database_url, "SET lock_timeout = '15s'", sql)


async def stored_texts(database_url: str, session_id: str) -> list[str]:
    conn = await asyncpg.connect(asyncpg_dsn(database_url), timeout=10)
    try:
        rows = await conn.fetch(
            "SELECT text FROM message WHERE session_id = $1::uuid ORDER BY ts, id", session_id
        )
    finally:
        await conn.close()
    return [r["text"] for r in rows]
