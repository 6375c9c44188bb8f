"""Alembic environment: async (asyncpg), one transaction per run, serialised by an advisory lock."""

from __future__ import annotations

import asyncio
import os

import sqlalchemy as sa
from alembic import context
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

import persistence.models  # noqa: F401  (fills SQLModel.metadata for autogenerate)
from persistence.db import create_engine
from persistence.migrate import AUTH_SCHEMA, MIGRATION_LOCK_KEY, MIGRATION_LOCK_TIMEOUT_S


def _database_url() -> str:
    url = context.config.attributes.get("database_url") or os.environ.get("DATABASE_URL")
    if not url:
        raise RuntimeError("No database URL: pass one to persistence.migrate.upgrade or set DATABASE_URL")
    return str(url)


def _include_name(name: str | None, type_: str, _parent: object) -> bool:
    # whatsmeow owns its schema; autogenerate must never propose dropping its tables.
    return not (type_ == "schema" and name == AUTH_SCHEMA)


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=SQLModel.metadata,
        include_schemas=True,
        include_name=_include_name,
        compare_type=True,
    )
    with context.begin_transaction():
        connection.execute(sa.text(f"SET LOCAL lock_timeout = '{MIGRATION_LOCK_TIMEOUT_S}s'"))
        # Held until commit: a concurrent upgrade waits here, then reads the new version and stops.
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        context.run_migrations()


async def _run_async() -> None:
    engine = create_engine(_database_url(), pooled=False, application_name="whatsapp-bridge-migrate")
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    raise RuntimeError("Offline (--sql) migrations are not supported")
asyncio.run(_run_async())
