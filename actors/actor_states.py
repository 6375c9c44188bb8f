"""What Ray's GCS says about named actors, read without the dashboard (its state API needs it in 2.60).

`ray.util.state` goes through the dashboard's HTTP server, which a cluster may not run; the GCS's actor
table is always there. Ray 2.60 exposes it through `ray._private.state` (private, but the same call
`ray.util.list_named_actors` and `ray.timeline` rest on); any change in it surfaces as an exception here,
and the caller treats that as "unknown", never as "dead".
"""

from __future__ import annotations

# An actor in one of these states has no process Ray has placed yet: it waits for a node with the
# resources it asks for (PENDING_CREATION, e.g. no free `wa_session` unit) or is being placed again
# after its process or node died (RESTARTING). A call to it waits; it is not unresponsive.
UNPLACED_STATES = ("DEPENDENCIES_UNREADY", "PENDING_CREATION", "RESTARTING")


def unplaced_names(namespace: str) -> set[str]:
    """Names of the actors of `namespace` that Ray has not placed (yet); raises if the GCS cannot say."""
    from ray._private import state
    from ray.core.generated import gcs_pb2

    accessor = state.state._connect_and_get_accessor()
    names: set[str] = set()
    for state_name in UNPLACED_STATES:
        # Filtered by state in the GCS: the (large, growing) table of dead actors never travels.
        for raw in accessor.get_actor_table(None, state_name):
            actor = gcs_pb2.ActorTableData.FromString(raw)  # type: ignore[attr-defined]
            if actor.name and actor.ray_namespace == namespace:
                names.add(actor.name)
    return names
