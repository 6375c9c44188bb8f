"""Async SQLAlchemy engines and session factories on asyncpg. Nothing is built at import time."""

from __future__ import annotations

from typing import Any

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool

from kernel.settings import asyncpg_dsn


def create_engine(
    database_url: str,
    *,
    pool_size: int = 5,
    max_overflow: int = 5,
    pool_timeout: float = 10.0,
    application_name: str = "whatsapp-bridge",
    pooled: bool = True,
) -> AsyncEngine:
    """An engine for any postgres URL we accept; `pooled=False` opens one connection per checkout.

    asyncpg parses the libpq URL itself (so `sslmode`, `host=/socket/dir`, `options` keep working);
    SQLAlchemy would otherwise turn every query parameter into an asyncpg keyword argument.
    """
    dsn = asyncpg_dsn(database_url)
    # A name given in the URL wins: asyncpg lets explicit server_settings override the URL's.
    settings = {} if "application_name=" in dsn else {"application_name": application_name}

    async def connect() -> Any:
        return await asyncpg.connect(dsn, server_settings=settings)

    if not pooled:
        return create_async_engine("postgresql+asyncpg://", async_creator=connect, poolclass=NullPool)
    return create_async_engine(
        "postgresql+asyncpg://",
        async_creator=connect,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=pool_timeout,
        pool_pre_ping=True,
    )


async def read_only(db: AsyncSession) -> bool:
    """Whether the database refuses writes from this connection: a standby (a primary demoted in a
    failover), or `default_transaction_read_only` set on the database."""
    setting = await db.scalar(text("SELECT current_setting('transaction_read_only')"))
    return bool(setting == "on")


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded values readable after commit (repo functions return plain values)."""
    return async_sessionmaker(engine, expire_on_commit=False)
