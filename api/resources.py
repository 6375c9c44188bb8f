"""What the front end's routes share, opened by the app's lifespan: database calls, actor handles, the
event hub, WebSocket tokens and metrics. None of it is session state: any number of API processes can
run side by side.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.auth import WsTokens
from api.database import Database
from api.handles import SessionActors
from api.hub import EventHub
from api.metrics import Metrics
from api.metrics_refresh import MetricsRefresher
from api.owners import SessionOwners
from api.user_keys import UserKeys
from kernel.settings import Settings

HANDSHAKES = 8


@dataclass(frozen=True, slots=True)
class ApiResources:
    settings: Settings
    db: Database
    owners: SessionOwners
    actors: SessionActors
    hub: EventHub
    tokens: WsTokens
    metrics: Metrics
    keys: UserKeys
    # WebSocket handshakes checking their credentials and reading their sessions at once (api.ws).
    handshakes: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(HANDSHAKES))


@asynccontextmanager
async def open_resources(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], metrics: Metrics
) -> AsyncIterator[ApiResources]:
    """Start the event hub and the handle cache for the lifetime of the app; stop them after."""
    if settings.redis_url is None:
        raise ValueError("REDIS_URL must be set")
    db = Database(sessions)
    owners = SessionOwners(db)
    actors = SessionActors(settings.ray_namespace, metrics)
    hub = EventHub(settings.redis_url, db, owners, metrics)
    tokens = WsTokens.from_settings(settings)
    keys = UserKeys.create(settings, db)
    resources = ApiResources(settings, db, owners, actors, hub, tokens, metrics, keys)
    refresher = MetricsRefresher(db, actors, metrics, settings.metrics_refresh_s)
    hub.start()
    refresher.start()
    try:
        yield resources
    finally:
        await refresher.stop()
        await hub.stop()
        await actors.close()
