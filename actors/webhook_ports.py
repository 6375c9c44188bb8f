"""What the webhook dispatchers need from outside: their store (PostgreSQL, wired by api/wiring.py) and
their configuration (from Settings)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from kernel.webhooks import DueDelivery, LoggedEvent


class WebhookStorePort(Protocol):
    """`persistence.webhook_store.WebhookStore`."""

    async def cursor(self, partition: str) -> str | None: ...
    async def record(
        self, partition: str, events: Sequence[LoggedEvent], cursor: str
    ) -> list[tuple[str, str]]: ...
    async def heads(self) -> list[tuple[str, str]]: ...
    async def queue(self, webhook_id: str, session_id: str, limit: int) -> list[DueDelivery]: ...
    async def settle(
        self,
        delivery: DueDelivery,
        state: str,
        status: int | None,
        error: str | None,
        next_attempt_at: datetime | None = None,
    ) -> None: ...
    async def delivered(self, webhook_id: str, answered: Sequence[tuple[str, int]]) -> None: ...
    async def purge(self, days: int) -> int: ...
    async def close(self) -> None: ...


class WebhookStores(Protocol):
    """Where a dispatcher's store comes from (`persistence.stores.PostgresStores`)."""

    def webhooks(self, dsn: str) -> WebhookStorePort: ...


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    database_dsn: str
    redis_url: str
    dispatchers: int = 1
    allow_private: bool = False
    backoff_max_s: float = 3600.0
    retry_for_s: float = 86400.0
    timeout_s: float = 10.0
    retention_days: int = 7
    # How often due retries are looked for (new events wake the dispatcher at once).
    poll_s: float = 1.0
    stores: WebhookStores = field(kw_only=True)
