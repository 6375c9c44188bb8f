"""The registry's configuration (built from Settings) and how it creates and places session actors."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import ray
from ray.actor import ActorHandle

from actors.actor import session_actor_class
from actors.ports import Stores
from actors.session_state import SessionConfig
from actors.webhook_ports import WebhookConfig
from kernel.ids import actor_name

CAPACITY_RESOURCE = "wa_session"
NODE_ID_LABEL = "ray.io/node-id"  # every node carries it (Ray 2.60)


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
    moves_per_s: float = 2.0  # drains and rebalances: moves started per second
    moves_parallel: int = 4  # ... and in flight at once
    stall_s: float = 60.0  # a session pending or unreachable longer than this makes /health `degraded`
    # Where the registry's and every session's stores come from (api/wiring.py: persistence's).
    stores: Stores = field(kw_only=True)
    # The webhook dispatchers the registry keeps alive (`actors.webhook_actor`); None: none.
    webhooks: WebhookConfig | None = field(default=None, kw_only=True)


@functools.cache
def _remote_session_actor(backend: str) -> Any:
    return ray.remote(session_actor_class(backend))


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
    config: RegistryConfig,
    session_id: str,
    node_id: str | None = None,
    avoid: frozenset[str] = frozenset(),
) -> ActorHandle[Any]:
    """Create (or find: `get_if_exists`) the detached actor of one session, preferring `node_id`, never on
    a node of `avoid` (drained ones: Ray's label selector on the node id, which it keeps for restarts)."""
    options = session_actor_options(config, session_id)
    if avoid:
        options["label_selector"] = {NODE_ID_LABEL: f"!in({','.join(sorted(avoid))})"}
    if node_id is not None:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node_id, soft=True)
    handle: ActorHandle[Any] = (
        _remote_session_actor(config.session.backend)
        .options(**options)
        .remote(session_id, config.session, config.stores)
    )
    return handle
