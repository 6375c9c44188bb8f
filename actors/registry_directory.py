"""Where the registry finds session actors: their names in the GCS, which Ray has placed, a ping of one."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import ray
from ray.actor import ActorHandle

from actors.actor_states import named_actors, unplaced_names
from kernel.domain import Placement
from kernel.ids import actor_name, session_id_of_actor

log = logging.getLogger(__name__)

PING_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class Listing:
    """The session actors of a namespace at one look at the GCS."""

    handles: dict[str, ActorHandle[Any]]  # every one, placed or not, by session id
    unplaced: set[str]  # of them, those Ray has not placed (yet)


class SessionDirectory:
    """The session actors of one namespace, as the GCS lists them.

    A look is a few reads of the GCS's actor table, whatever the number of sessions; a handle is looked
    up by name only for an actor not seen before (a new actor under a known name has a new id).
    """

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self._known: dict[str, tuple[bytes, ActorHandle[Any]]] = {}  # session id -> (actor id, handle)

    def handle(self, session_id: str) -> ActorHandle[Any] | None:
        try:
            return ray.get_actor(actor_name(session_id), namespace=self.namespace)
        except ValueError:
            return None

    def look(self) -> Listing:
        """Every named session actor of the namespace and which are unplaced; raises if the GCS cannot say."""
        known: dict[str, tuple[bytes, ActorHandle[Any]]] = {}
        unplaced: set[str] = set()
        for name, actor in named_actors(self.namespace).items():
            sid = session_id_of_actor(name)
            if sid is None:
                continue
            cached = self._known.get(sid)
            if cached is not None and cached[0] == actor.actor_id:
                handle: ActorHandle[Any] | None = cached[1]
            else:
                handle = self.handle(sid)  # None: it died since the table was read
            if handle is None:
                continue
            known[sid] = (actor.actor_id, handle)
            if not actor.placed:
                unplaced.add(sid)
        self._known = known
        return Listing({sid: h for sid, (_, h) in known.items()}, unplaced)

    def handles(self) -> dict[str, ActorHandle[Any]]:
        """Every named session actor of the namespace, placed or not."""
        return self.look().handles

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
