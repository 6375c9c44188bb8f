"""What Ray's GCS says about named actors, read without the dashboard (its state API needs it in 2.60).

`ray.util.state` goes through the dashboard's HTTP server, which a cluster may not run; the GCS's actor
table is always there. Ray 2.60 exposes it through `ray._private.state` (private, but the same call
`ray.util.list_named_actors` and `ray.timeline` rest on); any change in it surfaces as an exception here,
and the caller treats that as "unknown", never as "dead".
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

# An actor in one of these states has no process Ray has placed yet: it waits for a node with the
# resources it asks for (PENDING_CREATION, e.g. no free `wa_session` unit) or is being placed again
# after its process or node died (RESTARTING). A call to it waits; it is not unresponsive.
UNPLACED_STATES = ("DEPENDENCIES_UNREADY", "PENDING_CREATION", "RESTARTING")
# Every state but DEAD: the actors `ray.util.list_named_actors` lists.
LIVE_STATES = ("ALIVE", *UNPLACED_STATES)


@dataclass(frozen=True, slots=True)
class NamedActor:
    actor_id: bytes  # the same through restarts; a new actor under the same name has a new one
    placed: bool  # False in one of UNPLACED_STATES


def named_actors(namespace: str) -> dict[str, NamedActor]:
    """The named, not dead actors of `namespace` by name; raises if the GCS cannot say."""
    return {
        name: NamedActor(actor_id, placed=state == "ALIVE")
        for name, actor_id, state in _table(namespace, LIVE_STATES)
    }


def unplaced_names(namespace: str) -> set[str]:
    """Names of the actors of `namespace` that Ray has not placed (yet); raises if the GCS cannot say."""
    return {name for name, _, _ in _table(namespace, UNPLACED_STATES)}


def _table(namespace: str, states: tuple[str, ...]) -> Iterator[tuple[str, bytes, str]]:
    """(name, actor id, state) of the named actors of `namespace` in `states`."""
    from ray._private import state
    from ray.core.generated import gcs_pb2

    accessor = state.state._connect_and_get_accessor()
    for state_name in states:
        # Filtered by state in the GCS: the (large, growing) table of dead actors never travels.
        for raw in accessor.get_actor_table(None, state_name):
            actor = gcs_pb2.ActorTableData.FromString(raw)  # type: ignore[attr-defined]
            if actor.name and actor.ray_namespace == namespace:
                yield actor.name, actor.actor_id, state_name
