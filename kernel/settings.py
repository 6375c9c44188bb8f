"""Service configuration, read once from the environment (and `.env`) by the entry point."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from kernel.domain import Backend
from kernel.inbox_scope import InboxChats
from kernel.redis_url import Endpoint
from kernel.wire import EVENTS_RETAINED

MB = 1024 * 1024


class Settings(BaseSettings):
    """Every knob of the service. Field names are the environment variable names (case-insensitive)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    # Where the stateful services are. Unset: the local run starts embedded ones.
    database_url: str | None = None
    redis_url: str | None = None
    ray_address: str | None = None

    # The admin key: every route, any user through X-User-Id. Without one the API refuses to start.
    whatsapp_bridge_api_key: SecretStr | None = None
    # The server secret users' own keys are hashed with (api.user_keys). Unset: derived from the admin
    # key, so that rotating the admin key also revokes every user key.
    user_key_secret: SecretStr | None = None
    whatsapp_bridge_host: str = "127.0.0.1"
    whatsapp_bridge_port: Annotated[int, Field(ge=1, le=65535)] = 8000
    whatsapp_bridge_data_dir: Path = Path(".data")

    max_sessions_per_user: Annotated[int, Field(ge=1, le=32)] = 3
    wa_backend: Backend = Backend.NEONIZE
    max_media_bytes: Annotated[int, Field(ge=1)] = 16 * MB
    # Which chats the inbox stores and pushes: direct messages only, or groups too (kernel.inbox_scope).
    inbox_chats: InboxChats = InboxChats.DIRECT

    # Ray placement and supervision.
    ray_namespace: str = "whatsapp-bridge"
    wa_sessions_per_node: Annotated[int, Field(ge=1)] = 150
    session_reload_per_s: Annotated[float, Field(gt=0)] = 2.0
    reconcile_interval_s: Annotated[float, Field(gt=0)] = 10.0
    # An actor without a row is stopped (never logged out) only after being one this long.
    orphan_grace_s: Annotated[float, Field(ge=0)] = 600.0
    # Where each node keeps its sessions' spools (writes not yet in PostgreSQL): an absolute path on
    # every node's local disk; unset = the node's temporary folder (lost on reboot).
    session_spool_dir: Path | None = None
    session_spool_max_bytes: Annotated[int, Field(ge=1 * MB)] = 256 * MB
    # How often a session's process renews its heartbeat (`Session.live`); a beat lasts three of these.
    session_heartbeat_s: Annotated[float, Field(gt=0, le=60)] = 5.0
    # How long a session's lease lasts without renewal (`actors.lease`): how long another actor waits
    # before it may take over a number whose process went silent.
    session_lease_s: Annotated[float, Field(ge=1, le=300)] = 15.0

    # Each number's outbound pace (actors.pace): a send beyond it is 429 send_rate_limited; 0 turns it off.
    send_per_minute: Annotated[int, Field(ge=0, le=6000)] = 30
    send_burst: Annotated[int, Field(ge=0, le=1000)] = 10

    # Calls: decline each one (it is still a `call` frame), and then answer the caller with this text.
    reject_calls: bool = False
    reject_calls_message: Annotated[str, Field(max_length=4096)] = ""

    # Pairing: a QR round that ends unpaired starts a fresh one, at most this many, then `qr_timeout`.
    qr_max_rounds: Annotated[int, Field(ge=1)] = 3
    connect_timeout_s: Annotated[float, Field(gt=0)] = 60.0

    # Message store: messages older than this are deleted (0 keeps everything).
    message_retention_days: Annotated[int, Field(ge=0)] = 0
    retention_interval_s: Annotated[float, Field(gt=0)] = 3600.0

    ws_token_ttl_s: Annotated[int, Field(ge=10, le=86400)] = 300
    # /metrics: when set, a scrape must send `Authorization: Bearer <METRICS_TOKEN>`.
    metrics_token: SecretStr | None = None
    # How often each API process refreshes the figures /metrics reads from the database and the registry.
    metrics_refresh_s: Annotated[float, Field(gt=0, le=3600)] = 15.0
    # Live events kept in the `wa:events` stream for resuming sockets (`/ws?cursor=`): the window.
    event_stream_retained: Annotated[int, Field(gt=0)] = EVENTS_RETAINED
    # The browser console at `/` (api/console): it uses only the public API and asks for the API key.
    console_enabled: bool = True

    # Webhooks (actors/webhook_dispatcher.py): http and private/loopback addresses allowed (tests, or
    # receivers inside the deployment); the cap on each retry's delay; how long a delivery is retried
    # before it is `failed`; each request's timeout; dispatcher actors (sessions are split among them);
    # how long delivered and failed deliveries are kept.
    webhook_allow_private_urls: bool = False
    webhook_backoff_max_s: Annotated[float, Field(gt=0)] = 3600.0
    webhook_retry_for_s: Annotated[float, Field(gt=0)] = 86400.0
    webhook_timeout_s: Annotated[float, Field(gt=0, le=60)] = 10.0
    webhook_dispatchers: Annotated[int, Field(ge=1, le=64)] = 1
    webhook_retention_days: Annotated[int, Field(ge=1)] = 7

    # The simulated network's QR timings (whatsmeow: 60 s, then 20 s each, ~6 codes per round).
    sim_qr_first_s: Annotated[float, Field(gt=0)] = 60.0
    sim_qr_next_s: Annotated[float, Field(gt=0)] = 20.0
    sim_qr_codes: Annotated[int, Field(ge=1)] = 6

    log_level: str = "INFO"

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is not None:
            Endpoint.from_url(value)  # what the sessions will connect with: refuse it here, not in each one
        return value

    @field_validator("log_level")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()

    def api_key(self) -> str:
        """The API key in clear, for the places that compare it or derive secrets from it."""
        if self.whatsapp_bridge_api_key is None or not self.whatsapp_bridge_api_key.get_secret_value():
            raise RuntimeError("WHATSAPP_BRIDGE_API_KEY is not set")
        return self.whatsapp_bridge_api_key.get_secret_value()


def asyncpg_dsn(url: str) -> str:
    """A libpq-style URL (what asyncpg, lib/pq and psql take) from any postgres URL we accept."""
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme.startswith("postgres"):
        raise ValueError("DATABASE_URL must be a postgresql:// URL")
    return f"postgresql://{rest}"


def sqlalchemy_url(url: str) -> str:
    """The SQLAlchemy async URL (asyncpg driver) for a postgres URL."""
    return "postgresql+asyncpg://" + asyncpg_dsn(url).partition("://")[2]
