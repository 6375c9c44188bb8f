"""`whatsapp-bridge leave`: a Ray node's way out with its sessions moved first (a KubeRay worker pod's
preStop, deploy/kuberay/raycluster.yaml).

It marks the node draining in Ray's GCS with a deadline (what `ray drain-node` and a SIGTERM'd
`ray start --block` do), so Ray places nothing more there and the registry moves its sessions
(`actors.node_exits`); then it waits until no session actor is left on the node, at most until the
deadline, and no longer once no other node has room for them (Ray restarts those when capacity
appears). It talks to the GCS as a client only (no Ray driver), so the node's raylet may exit under
it: Ray stops an emptied draining node by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from actors.fleet import CAPACITY_RESOURCE
from kernel.ids import session_id_of_actor

log = logging.getLogger(__name__)

DEFAULT_DEADLINE_S = 300.0  # deploy/kuberay/raycluster.yaml: ~2 s per session, 150 sessions
POLL_S = 1.0
CALL_TIMEOUT_S = 10.0


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="whatsapp-bridge leave",
        description="Mark this Ray node draining and wait until its sessions have moved to other nodes.",
    )
    parser.add_argument(
        "--deadline",
        type=float,
        default=DEFAULT_DEADLINE_S,
        help=f"seconds the sessions have to move (default {DEFAULT_DEADLINE_S:.0f})",
    )
    parser.add_argument("--address", default="auto", help="the GCS (host:port; default: this node's cluster)")
    parser.add_argument("--node-id", help="the node to drain (default: the Ray node on this machine)")
    return parser


def main(argv: Sequence[str]) -> int:
    args = parser().parse_args(list(argv))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from ray._private import services
    from ray._raylet import GcsClient  # type: ignore[attr-defined]

    gcs = GcsClient(address=services.canonicalize_bootstrap_address_or_die(args.address))
    node_id = args.node_id or services.get_node_to_connect_for_driver(gcs).node_id.hex()
    left = leave(gcs, node_id, args.deadline)
    return 0 if left == 0 else 1


def leave(gcs: Any, node_id: str, deadline_s: float) -> int:
    """Drain `node_id` with a deadline `deadline_s` from now; the sessions still on it when it ends."""
    from ray.core.generated import autoscaler_pb2

    deadline = time.time() + deadline_s
    accepted, why = gcs.drain_node(
        node_id,
        autoscaler_pb2.DrainNodeReason.Value("DRAIN_NODE_REASON_PREEMPTION"),  # type: ignore[attr-defined]
        "whatsapp-bridge leave: the node is going; its sessions move first",
        int(deadline * 1000),
        timeout=CALL_TIMEOUT_S,
    )
    if not accepted:
        log.error("leave: Ray refused to drain node %s: %s", node_id[:12], why)
        return -1
    log.info("leave: node %s draining; its sessions have %.0fs to move", node_id[:12], deadline_s)
    held = -1
    while True:
        try:
            now_held = sessions_on(gcs, node_id)
        except Exception:  # the GCS or this node's raylet going away is no reason to stop waiting
            log.warning("leave: cannot list the node's sessions; retrying", exc_info=True)
            now_held = held
        if now_held != held:
            log.info("leave: %d sessions left on node %s", now_held, node_id[:12])
            held = now_held
        if held == 0:
            return 0
        if held > 0 and _room_elsewhere(gcs, node_id) <= 0:
            # Every other node is full or going too (a Recreate upgrade deletes every worker pod at
            # once): holding the pod would only delay the new ones. Ray restarts what is left when
            # capacity appears, with its stored device.
            log.warning("leave: no other node has room for the %d sessions left; not waiting", held)
            return held
        if time.time() >= deadline:
            log.error("leave: %d sessions still on node %s at the deadline", held, node_id[:12])
            return held
        time.sleep(POLL_S)


def sessions_on(gcs: Any, node_id: str) -> int:
    """Session actors placed on the node, in any namespace."""
    return _placed(gcs).get(node_id, 0)


def _placed(gcs: Any) -> Counter[str]:
    """Session actors placed on each node, in any namespace."""
    actors = asyncio.run(_alive_actors(gcs))
    return Counter(
        actor.address.node_id.hex()
        for actor in actors.values()
        if session_id_of_actor(actor.name) is not None
    )


def _room_elsewhere(gcs: Any, node_id: str) -> int:
    """Free `wa_session` units on the live nodes other than `node_id` that Ray is not draining."""
    from ray.core.generated import gcs_pb2

    going = gcs.get_draining_nodes(timeout=CALL_TIMEOUT_S)
    usable = {
        key.hex(): int(info.resources_total.get(CAPACITY_RESOURCE, 0))
        for key, info in gcs.get_all_node_info(timeout=CALL_TIMEOUT_S).items()
        if info.state == gcs_pb2.GcsNodeInfo.ALIVE and key.hex() != node_id and key.hex() not in going  # type: ignore[attr-defined]
    }
    placed = _placed(gcs)
    return sum(capacity - placed.get(node, 0) for node, capacity in usable.items())


async def _alive_actors(gcs: Any) -> dict[Any, Any]:
    found: dict[Any, Any] = await gcs.async_get_all_actor_info(
        actor_state_name="ALIVE", timeout=CALL_TIMEOUT_S
    )
    return found
