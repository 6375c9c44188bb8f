"""The registry's configuration (built from Settings) and how it creates and places session actors."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import ray
from ray.actor import ActorHandle

from actors.actor import SessionActor
from actors.config import Settings, asyncpg_dsn
from actors.ids import actor_name
from actors.session_state import SessionConfig

CAPACITY_RESOURCE = "wa_session"


@dataclass(frozen=True, slots=True)
class RegistryConfig:
    database_dsn: str
    namespace: str
    session: SessionConfig
    reload_per_s: float = 2.0
    reconcile_interval_s: float = 10.0
    unresponsive_passes: int = 3
    orphan_grace_s: float = 600.0
    message_retention_days: int = 0
    retention_interval_s: float = 3600.0


def registry_config(settings: Settings) -> RegistryConfig:
    """The registry's and sessions' configuration from fully resolved Settings (URLs set)."""
    from persistence.migrate import auth_dsn, sim_dsn

    if not settings.database_url or not settings.redis_url:
        raise ValueError("DATABASE_URL and REDIS_URL must be resolved before starting the registry")
    dsn = asyncpg_dsn(settings.database_url)
    simulated = settings.wa_backend == "simulated"
    session = SessionConfig(
        backend=settings.wa_backend.value,
        database_dsn=dsn,
        auth_dsn=sim_dsn(settings.database_url) if simulated else auth_dsn(settings.database_url),
        redis_url=settings.redis_url,
        qr_max_rounds=settings.qr_max_rounds,
        connect_timeout_s=settings.connect_timeout_s,
        max_media_bytes=settings.max_media_bytes,
        inbox_chats=settings.inbox_chats.value,
        qr_first_s=settings.sim_qr_first_s,
        qr_next_s=settings.sim_qr_next_s,
        qr_codes=settings.sim_qr_codes,
        spool_dir=str(settings.session_spool_dir) if settings.session_spool_dir else "",
        spool_max_bytes=settings.session_spool_max_bytes,
        events_retained=settings.event_stream_retained,
        heartbeat_s=settings.session_heartbeat_s,
    )
    return RegistryConfig(
        database_dsn=dsn,
        namespace=settings.ray_namespace,
        session=session,
        reload_per_s=settings.session_reload_per_s,
        reconcile_interval_s=settings.reconcile_interval_s,
        orphan_grace_s=settings.orphan_grace_s,
        message_retention_days=settings.message_retention_days,
        retention_interval_s=settings.retention_interval_s,
    )


@functools.cache
def _remote_session_actor() -> Any:
    return ray.remote(SessionActor)


def session_actor_options(config: RegistryConfig, session_id: str) -> dict[str, Any]:
    """How every session actor is created: detached, named, restarted forever, placed by capacity."""
    return {
        "name": actor_name(session_id),
        "namespace": config.namespace,
        "lifetime": "detached",
        "max_restarts": -1,
        "max_task_retries": 0,
        "num_cpus": 0,
        "resources": {CAPACITY_RESOURCE: 1},
        "scheduling_strategy": "SPREAD",
        "get_if_exists": True,
    }


def create_session_actor(
    config: RegistryConfig, session_id: str, node_id: str | None = None
) -> ActorHandle[Any]:
    """Create (or find: `get_if_exists`) the detached actor of one session, preferring `node_id`."""
    options = session_actor_options(config, session_id)
    if node_id is not None:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node_id, soft=True)
    handle: ActorHandle[Any] = _remote_session_actor().options(**options).remote(session_id, config.session)
    return handle
