"""Migrations build exactly the models' schema, repeatably and concurrently; the schema DSNs work."""

from __future__ import annotations

import asyncio
import sys
import textwrap
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

import persistence.models  # noqa: F401  (fills SQLModel.metadata)
from persistence.db import create_engine
from persistence.migrate import alembic_config, auth_dsn, schema_dsn, sim_dsn, upgrade, upgrade_async
from tests.conftest import DeadEndProxy

REPO = Path(__file__).resolve().parents[1]
HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()

# Everything about a table that the schema contract fixes, read back from the catalog.
_CATALOG = {
    "columns": """
        SELECT table_schema, table_name, column_name, data_type, character_maximum_length, is_nullable,
               column_default, is_identity
        FROM information_schema.columns WHERE table_schema IN ('public', 'wa_sim')
          AND table_name <> 'alembic_version' ORDER BY 1, 2, 3""",
    "constraints": """
        SELECT n.nspname, c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid)
        FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
        WHERE n.nspname IN ('public', 'wa_sim') AND c.conrelid::regclass::text <> 'alembic_version'
        ORDER BY 1, 2, 3""",
    "indexes": """
        SELECT schemaname, tablename, indexname, indexdef FROM pg_indexes
        WHERE schemaname IN ('public', 'wa_sim') AND tablename <> 'alembic_version' ORDER BY 1, 2, 3""",
    "schemas": "SELECT nspname FROM pg_namespace WHERE nspname IN ('whatsmeow', 'wa_sim') ORDER BY 1",
}

FreshDb = Callable[[], Awaitable[str]]


def _with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


@pytest.fixture
async def fresh_db(database_url: str) -> AsyncIterator[FreshDb]:
    """Makes empty databases on the test server; drops them afterwards."""
    names: list[str] = []

    async def make() -> str:
        name = f"wab_mig_{uuid.uuid4().hex[:10]}"
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        names.append(name)
        return _with_database(database_url, name)

    yield make
    conn = await asyncpg.connect(database_url)
    try:
        for name in names:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def _catalog(url: str) -> dict[str, list[tuple[Any, ...]]]:
    conn = await asyncpg.connect(url)
    try:
        return {key: [tuple(r) for r in await conn.fetch(sql)] for key, sql in _CATALOG.items()}
    finally:
        await conn.close()


async def _fetchval(url: str, sql: str) -> Any:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


async def _python(script: str, *, timeout: float) -> tuple[int | None, str]:
    """Run a Python snippet in a fresh interpreter: its exit code and stderr."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        script,
        cwd=REPO,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return proc.returncode, err.decode(errors="replace")


def _diff(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(
        connection,
        opts={
            "include_schemas": True,
            "compare_type": True,
            "include_name": lambda name, kind, _parent: not (kind == "schema" and name == "whatsmeow"),
        },
    )
    return list(compare_metadata(context, SQLModel.metadata))


async def test_the_migrated_schema_is_exactly_the_models(fresh_db: FreshDb) -> None:
    migrated, reference = await fresh_db(), await fresh_db()
    await upgrade_async(migrated)

    engine = create_engine(reference, pooled=False)
    async with engine.begin() as conn:
        for schema in ("whatsmeow", "wa_sim"):
            await conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
        await conn.run_sync(SQLModel.metadata.create_all)
    await engine.dispose()

    assert await _catalog(migrated) == await _catalog(reference)
    engine = create_engine(migrated, pooled=False)
    async with engine.connect() as conn:
        assert await conn.run_sync(_diff) == []
    await engine.dispose()


async def test_upgrading_again_changes_nothing(fresh_db: FreshDb) -> None:
    url = await fresh_db()
    await upgrade_async(url)
    conn = await asyncpg.connect(url)
    await conn.execute("INSERT INTO app_user (id, whatsapp_phone) VALUES ('alice', '+14155552671')")
    await conn.close()

    upgrade(url)  # the plain blocking form, as the run command calls it
    await upgrade_async(url)

    assert await _fetchval(url, "SELECT version_num FROM alembic_version") == HEAD
    assert await _fetchval(url, "SELECT whatsapp_phone FROM app_user WHERE id = 'alice'") == "+14155552671"


async def test_processes_starting_together_migrate_once_without_errors(fresh_db: FreshDb) -> None:
    url = await fresh_db()
    start_at = time.time() + 4  # after every process has imported, so the upgrades really overlap
    script = textwrap.dedent(
        f"""
        import time
        import alembic.command, persistence.db, persistence.models  # the slow imports, before the start
        from persistence.migrate import upgrade
        time.sleep(max(0.0, {start_at!r} - time.time()))
        upgrade({url!r})
        """
    )
    results = await asyncio.gather(*(_python(script, timeout=120) for _ in range(3)))
    for returncode, err in results:
        assert returncode == 0, err
    assert await _fetchval(url, "SELECT version_num FROM alembic_version") == HEAD
    assert await _fetchval(url, "SELECT count(*) FROM pg_tables WHERE tablename = 'whatsapp_session'") == 1


async def test_schema_dsns_set_the_search_path(database_url: str) -> None:
    for dsn, schema in ((auth_dsn(database_url), "whatsmeow"), (sim_dsn(database_url), "wa_sim")):
        conn = await asyncpg.connect(dsn)
        try:
            assert await conn.fetchval("SHOW search_path") == schema
            probe = conn.transaction()
            await probe.start()
            await conn.execute("CREATE TABLE probe (x int)")  # unqualified: lands in the schema
            assert await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f"{schema}.probe")
            await probe.rollback()
        finally:
            await conn.close()


def test_schema_dsn_keeps_the_urls_own_settings() -> None:
    dsn = schema_dsn(
        "postgresql+asyncpg://u:p%40ss@/app?host=/run/pg&options=-c%20statement_timeout%3D5000&sslmode=disable",
        "whatsmeow",
    )
    assert dsn == (
        "postgresql://u:p%40ss@/app?host=/run/pg&"
        "options=-c%20statement_timeout%3D5000%20-c%20search_path%3Dwhatsmeow&sslmode=disable"
    )
    # lib/pq (whatsmeow) defaults to sslmode=require; libpq's own default keeps a non-TLS server usable.
    assert schema_dsn("postgresql://u@h/db", "wa_sim").endswith("&sslmode=prefer")


async def test_whatsmeow_keeps_its_tables_in_its_own_schema(
    fresh_db: FreshDb, no_route_to_whatsapp: DeadEndProxy
) -> None:
    """neonize's Go side (lib/pq) honours the auth DSN: its 17 tables appear in `whatsmeow` only."""
    url = await fresh_db()
    await upgrade_async(url)
    # Connecting fails at the WhatsApp dial (no route: the dead end), after whatsmeow set up its store.
    script = textwrap.dedent(
        f"""
        import os, threading, uuid
        os.environ["NEONIZE_BOT_TAG"] = "off"
        threading.Timer(30, lambda: os._exit(3)).start()
        from neonize.client import NewClient
        try:
            NewClient({auth_dsn(url)!r}, uuid=str(uuid.uuid4()), new_device=True).connect()
        except Exception:
            pass
        os._exit(0)
        """
    )
    await _python(script, timeout=90)
    assert no_route_to_whatsapp.attempts >= 1
    count = "SELECT count(*) FROM pg_tables WHERE schemaname = '{}' AND tablename LIKE 'whatsmeow%'"
    assert await _fetchval(url, count.format("whatsmeow")) >= 10
    assert await _fetchval(url, count.format("public")) == 0
