"""PostgreSQL as the processes of the cluster use it: the factory the registry and each session actor get.

`PostgresStores` implements `actors.ports.Stores` structurally (persistence/ never imports actors/). It
holds no state, so Ray pickles it into every actor's constructor arguments by reference and an actor Ray
restarts builds its stores again from it and its configuration's DSNs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from persistence.session_store import SessionStore
from persistence.sim_network import SimStore

if TYPE_CHECKING:
    from persistence.fleet_store import FleetStore
    from persistence.webhook_store import WebhookStore


@dataclass(frozen=True, slots=True)
class PostgresStores:
    def session_store(self, dsn: str, session_id: str) -> SessionStore:
        return SessionStore(dsn, session_id)

    def sim_network(self, dsn: str, session_id: str) -> SimStore:
        return SimStore(dsn, session_id)

    def fleet(self, dsn: str) -> FleetStore:
        # Imported here: the registry's store is SQLAlchemy's, which a session process must not load
        # (~33 MiB more per process; tests/test_session_store.py).
        from persistence.fleet_store import FleetStore

        return FleetStore(dsn)

    def webhooks(self, dsn: str) -> WebhookStore:
        """The webhook dispatchers' store (`actors.webhook_ports.WebhookStores`)."""
        from persistence.webhook_store import WebhookStore

        return WebhookStore(dsn)
