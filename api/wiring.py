"""Where the layers meet: the registry's and sessions' configuration, with persistence's stores.

actors/ and persistence/ never import each other (tests/test_layers.py); this module, run by the API's
process that starts the cluster, is the one place that puts persistence's stores into the actors'
configuration.
"""

from __future__ import annotations

from typing import Any

from ray.actor import ActorHandle

from actors.registry import start_registry
from actors.registry_config import RegistryConfig
from actors.session_state import SessionConfig
from actors.webhook_ports import WebhookConfig
from kernel.settings import Settings, asyncpg_dsn
from persistence.migrate import auth_dsn, sim_dsn
from persistence.stores import PostgresStores


def ensure_registry(settings: Settings) -> ActorHandle[Any]:
    """The running registry, created if missing (a running one keeps the configuration it started with)."""
    return start_registry(registry_config(settings))


def registry_config(settings: Settings) -> RegistryConfig:
    """The registry's and sessions' configuration from fully resolved Settings (URLs set)."""
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
        lease_s=settings.session_lease_s,
        send_per_minute=settings.send_per_minute,
        send_burst=settings.send_burst,
        reject_calls=settings.reject_calls,
        reject_calls_message=settings.reject_calls_message.strip(),
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
        stores=PostgresStores(),
        webhooks=webhook_config(settings, dsn),
    )


def webhook_config(settings: Settings, dsn: str) -> WebhookConfig:
    """The webhook dispatchers' configuration (the registry creates and supervises them)."""
    if not settings.redis_url:
        raise ValueError("REDIS_URL must be resolved before starting the webhook dispatchers")
    return WebhookConfig(
        database_dsn=dsn,
        redis_url=settings.redis_url,
        dispatchers=settings.webhook_dispatchers,
        allow_private=settings.webhook_allow_private_urls,
        backoff_max_s=settings.webhook_backoff_max_s,
        retry_for_s=settings.webhook_retry_for_s,
        timeout_s=settings.webhook_timeout_s,
        retention_days=settings.webhook_retention_days,
        stores=PostgresStores(),
    )
