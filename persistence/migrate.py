"""Schema migrations (Alembic, configured in code so an installed package needs no ini file) and DSNs.

`upgrade` is safe to call from several processes at once: the migration transaction takes a
PostgreSQL advisory lock first, so the second caller waits and then finds nothing left to do.
Alembic is imported lazily: a session process needs `auth_dsn` but not the migration machinery.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from kernel.settings import asyncpg_dsn

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().with_name("migrations")
# Key of the advisory lock held by the migration transaction (any constant bigint unique to us).
MIGRATION_LOCK_KEY = 0x5742_5F4D_4947
# Bound on any lock wait inside a migration, the advisory lock included (a stuck peer must not hang us).
MIGRATION_LOCK_TIMEOUT_S = 300
AUTH_SCHEMA = "whatsmeow"
SIM_SCHEMA = "wa_sim"


def alembic_config(database_url: str | None = None) -> Config:
    """An Alembic config pointing at the packaged migrations; `env.py` reads the URL from its attributes."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("path_separator", "os")
    if database_url is not None:
        cfg.attributes["database_url"] = database_url
    return cfg


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the database to `revision`; blocks. Safe to call concurrently and repeatedly."""
    from alembic import command

    cfg = alembic_config(database_url)
    # env.py runs its own event loop: a fresh thread keeps it clear of any loop the caller has.
    with ThreadPoolExecutor(1, thread_name_prefix="migrate") as pool:
        pool.submit(command.upgrade, cfg, revision).result()
    log.info("database schema at %s", revision)


async def upgrade_async(database_url: str, revision: str = "head") -> None:
    """`upgrade` without blocking the caller's event loop."""
    await asyncio.to_thread(upgrade, database_url, revision)


def schema_dsn(database_url: str, schema: str) -> str:
    """A libpq URL for the same database whose connections use `search_path=<schema>`.

    The schema goes in `options=-c search_path=...`, which libpq (psql), asyncpg and lib/pq (whatsmeow)
    all pass to the server. `sslmode` defaults to `prefer` as in libpq, because lib/pq's default is
    `require` and would refuse a server without TLS.
    """
    parts = urlsplit(asyncpg_dsn(database_url))
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    query.pop("search_path", None)
    options = query.get("options", "").strip()
    query["options"] = f"{options} -c search_path={schema}".strip()
    query.setdefault("sslmode", "prefer")
    return urlunsplit(parts._replace(query=urlencode(query, safe="/", quote_via=quote)))


def auth_dsn(database_url: str) -> str:
    """The DSN neonize/whatsmeow gets for its auth store (the `whatsmeow` schema)."""
    return schema_dsn(database_url, AUTH_SCHEMA)


def sim_dsn(database_url: str) -> str:
    """The DSN the simulated network uses for its device store (the `wa_sim` schema)."""
    return schema_dsn(database_url, SIM_SCHEMA)
