"""Embedded PostgreSQL, Valkey and a local Ray head, for the local run (`whatsapp-bridge`) and the tests.

Each service keeps its data in a folder of its own, listens on 127.0.0.1 only, and is stopped when its
context exits, on an exception too. Leftovers of a run that was killed (a server still running on the
same data, a stale pid file) are cleaned up when the next run starts, so a `kill -9` never blocks the
next start.

Nothing here is used when DATABASE_URL / REDIS_URL / RAY_ADDRESS point at real services.
"""

from __future__ import annotations

from api.local_postgres import DATABASE, PG_SYSTEM_USER, embedded_postgres, pg_bin, pg_max_connections
from api.local_ray import (
    RAY_NODE_ENV,
    RAY_OBJECT_STORE_BYTES,
    local_ray,
    ray_driver_env,
    ray_temp_dir,
)
from api.local_valkey import EmbeddedValkey, embedded_valkey
from api.localproc import LOCALHOST, free_port

__all__ = [
    "DATABASE",
    "LOCALHOST",
    "PG_SYSTEM_USER",
    "RAY_NODE_ENV",
    "RAY_OBJECT_STORE_BYTES",
    "EmbeddedValkey",
    "embedded_postgres",
    "embedded_valkey",
    "free_port",
    "local_ray",
    "pg_bin",
    "pg_max_connections",
    "ray_driver_env",
    "ray_temp_dir",
]
