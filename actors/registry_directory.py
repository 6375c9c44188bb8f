"""Where the registry finds session actors: their names in the GCS, which Ray has placed, a ping of one."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import ray
from ray.actor import ActorHandle

from actors.actor_states import unplaced_names
from kernel.domain import Placement
from kernel.ids import actor_name, session_id_of_actor

log = logging.getLogger(__name__)

PING_TIMEOUT_S = 5.0


class SessionDirectory:
    """The session actors of one namespace, as the GCS lists them. Holds no state of its own."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace

    def handle(self, session_id: str) -> ActorHandle[Any] | None:
        try:
            return ray.get_actor(actor_name(session_id), namespace=self.namespace)
        except ValueError:
            return None

    def handles(self) -> dict[str, ActorHandle[Any]]:
        """Every named session actor of the namespace, placed or not."""
        handles: dict[str, ActorHandle[Any]] = {}
        for entry in ray.util.list_named_actors(all_namespaces=True):
            if entry["namespace"] != self.namespace:
                continue
            sid = session_id_of_actor(entry["name"])
            if sid is None:
                continue
            handle = self.handle(sid)
            if handle is not None:
                handles[sid] = handle
        return handles

    def unplaced(self) -> set[str] | None:
        """Session ids whose actor Ray has not placed; None when the GCS cannot say."""
        try:
            names = unplaced_names(self.namespace)
        except Exception:
            log.warning("registry: cannot read actor states from the GCS", exc_info=True)
            return None
        return {sid for sid in map(session_id_of_actor, names) if sid is not None}


async def ping(session_id: str, handle: ActorHandle[Any]) -> Placement:
    """The actor's own report, or an absent placement when it does not answer within PING_TIMEOUT_S."""
    try:
        placement: Placement = await asyncio.wait_for(handle.ping.remote(), PING_TIMEOUT_S)
        return placement
    except Exception:
        return absent_placement(session_id)


def absent_placement(session_id: str) -> Placement:
    return Placement(session_id, None, None, None, alive=False, ready=False)
