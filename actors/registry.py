"""The SessionRegistry: the supervisor of every session actor.

Guarantees (its truth is PostgreSQL plus the named actors that exist, so it can die at any time):
- Every session row has exactly one actor named `session-<id>` in the namespace. A reconcile pass enforces
  it every `reconcile_interval_s`; it catches errors per session and never dies.
- Never a logout by mistake. Only `destroy_session` (DELETE /sessions/{id}) unlinks a device
  (`close(purge=True)`). An actor without a row (an orphan) is stopped without logout (`close(purge=False)`,
  then killed), and only once it has been an orphan on every pass for `orphan_grace_s` and a fresh look
  at its row, right before the stop, still finds none. Named actors are listed *before* the rows are
  read, so an actor whose row is being inserted is never mistaken for an orphan. A pass that cannot read
  the rows changes nothing (no creation, stop or restart) and restarts every orphan's grace.
- Actor creations are staggered at `reload_per_s` (a fleet of whatsmeow clients reconnecting at once gets
  cut off; Ray starts workers at ~1-2/s on 2 cores anyway). The first pass after the registry starts is
  the cold reload: paired sessions first, progress logged.
- Placement: `SPREAD` over the nodes that advertise the `wa_session` resource, one unit per session,
  so a node never holds more sessions than it advertises. An actor that Ray has not placed (no node with
  a free unit, or being restarted) is waited for: never pinged, counted unresponsive, killed or
  recreated; `pending()` counts them and their oldest wait, and each change is logged.
- A dead process or a lost node is Ray's to restart (`max_restarts=-1`); the session resumes from
  PostgreSQL with its stored device, no scan. An actor Ray gave up on (failed creation, dead for good)
  has no name any more and is created anew on the next pass; a placed one that stops answering pings for
  `unresponsive_passes` passes is killed and recreated. One that answers but reports `stuck` for as many
  passes is killed *with* restart: Ray starts a fresh process under the same actor (same name and
  handles, no window without an actor). One that reports `ready=False` alone is booting or waiting for
  PostgreSQL, retries by itself, and is only logged.
- Messages older than `message_retention_days` (0: never) are purged every `retention_interval_s`, in
  bounded batches, keeping each chat's last message (see `repo.purge_old_messages`).
- Drains and rebalances are rows in PostgreSQL that the registry carries out and resumes after any
  death (`actors.operations`); supervision leaves a session alone while it is being moved.
- A node Ray is draining (a scale-down, a pod deletion, `ray drain-node`) gets a forced drain of its own,
  once (`actors.node_exits`): its sessions move before it goes, as for a drain the API asked for.
- The webhook dispatchers (`actors.webhook_actor`) exist and answer: created when missing, replaced when
  silent, on the same loop discipline.
- Sessions never depend on the registry: killing it changes nothing for them; restarted by Ray, it
  rebuilds its picture from the named actors and PostgreSQL (orphan grace and pending ages start anew).

- Each pass keeps what every placed session's journal reported (`writes()`: spooled, set aside, refused
  by the database); `replay_failed` has sessions requeue what they set aside, on demand only.

Idempotent calls: `ensure_session` (creates at most one actor), `destroy_session` (a missing actor or row
is not an error), `reconcile`, `placements`, `where`, `pending`, `writes`. `replay_failed` requeues each
set-aside write once (a write replayed twice after a crash is stored once: every write is idempotent).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

import ray
from ray._common.constants import HEAD_NODE_RESOURCE_NAME
from ray.actor import ActorHandle

from actors.calls import RegistryCalls
from actors.node_exits import NodeExits
from actors.operations import Operations
from actors.registry_config import (
    CAPACITY_RESOURCE,
    RegistryConfig,
    create_session_actor,
    session_actor_options,
)
from actors.registry_creations import Creations
from actors.registry_directory import PING_TIMEOUT_S, SessionDirectory, absent_placement, ping
from actors.registry_supervision import CLOSE_TIMEOUT_S, Supervision
from actors.supervision import Pending, Replayed, Writes
from actors.tasks import TaskGroup
from actors.webhook_actor import WebhookSupervision
from kernel.domain import Placement
from kernel.errors import SessionNotFound

log = logging.getLogger(__name__)

__all__ = [
    "CAPACITY_RESOURCE",
    "REGISTRY_NAME",
    "RegistryConfig",
    "SessionRegistry",
    "create_session_actor",
    "get_registry",
    "session_actor_options",
    "start_registry",
]

REGISTRY_NAME = "session-registry"


def start_registry(config: RegistryConfig) -> ActorHandle[Any]:
    remote: Any = ray.remote(SessionRegistry)
    handle: ActorHandle[Any] = remote.options(
        name=REGISTRY_NAME,
        namespace=config.namespace,
        lifetime="detached",
        max_restarts=-1,
        max_task_retries=0,
        num_cpus=0,
        # On the head, as Ray Serve pins its controller: a worker pod's deletion, a scale-down or a
        # rollout of the workers never restarts the supervisor (tests/test_cluster.py).
        resources={HEAD_NODE_RESOURCE_NAME: 0.001},
        get_if_exists=True,
    ).remote(config)
    return handle


def get_registry(namespace: str) -> ActorHandle[Any]:
    return ray.get_actor(REGISTRY_NAME, namespace=namespace)


class SessionRegistry:
    """The Ray actor: public calls and the loops; each concern is a collaborator built here."""

    def __init__(self, config: RegistryConfig) -> None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        self._config = config
        self._tasks = TaskGroup("registry")
        self._store = config.stores.fleet(config.database_dsn)
        self._directory = SessionDirectory(config.namespace)
        self._creations = Creations(config, self._directory, self._tasks)
        self._supervision = Supervision(config, self._store)
        self._operations = Operations(config, self._store, self._directory, self._creations, self._tasks)
        self._passes = 0  # reconcile passes that read the rows
        self._tasks.spawn(self._loop(), "reconcile loop")
        self._tasks.spawn(self._operations.run(), "operations")
        self._tasks.spawn(NodeExits(config.namespace, self._store).run(), "Ray's draining nodes")
        if config.message_retention_days > 0:
            self._tasks.spawn(self._retention_loop(), "message retention")
        if config.webhooks is not None:
            supervision = WebhookSupervision(config.webhooks, config.namespace, config.reconcile_interval_s)
            self._tasks.spawn(supervision.run(), "webhook dispatchers")

    def __repr__(self) -> str:
        # Read by Ray once per process, after __init__ (`repr_name` in the dashboard and the GCS actor table).
        node = ray.get_runtime_context().get_node_id()[:12]
        return f"SessionRegistry(namespace={self._config.namespace}, node={node}, pid={os.getpid()})"

    # ------------------------------------------------------------------ public calls

    async def ensure_session(self, session_id: str, node_id: str | None = None) -> None:
        """Create the session's actor if it has none (idempotent); returns once it is scheduled.

        `node_id`: the node to prefer (soft: a full one leaves Ray free to choose, never a drained one).
        """
        self._creations.create(session_id, node_id)

    async def destroy_session(self, session_id: str) -> bool:
        """Unlink, stop and forget a session: actor closed and killed, row and keys deleted. Idempotent.

        The only call that logs a device out.
        """
        with self._creations.destroying(session_id):
            handle = self._directory.handle(session_id)
            if handle is not None:
                try:
                    await asyncio.wait_for(handle.close.remote(True), CLOSE_TIMEOUT_S)
                except Exception:
                    log.warning(
                        "registry: session %s did not close cleanly; killing it", session_id, exc_info=True
                    )
                ray.kill(handle, no_restart=True)
            existed = True
            try:
                await self._store.delete_session(session_id)
            except SessionNotFound:
                existed = False
        self._supervision.forget(session_id)
        log.info("registry: session %s destroyed", session_id)
        return existed

    async def where(self, session_id: str) -> Placement:
        """A ping of the session's actor (one Ray has not placed yet answers within PING_TIMEOUT_S or not)."""
        handle = self._directory.handle(session_id)
        if handle is None:
            return absent_placement(session_id)
        return await ping(session_id, handle)

    async def placements(self) -> list[Placement]:
        handles = self._directory.handles()
        return list(await asyncio.gather(*(ping(sid, h) for sid, h in handles.items())))

    async def pending(self) -> Pending:
        """Sessions waiting for Ray to place their actor (a fresh look at the GCS)."""
        self._supervision.observe_unplaced(self._directory.unplaced())
        return self._supervision.pending()

    async def writes(self) -> Writes:
        """The sessions' journals as of the last pass: spooled, set aside, refused by the database."""
        return self._supervision.writes()

    async def replay_failed(self, session_id: str | None = None) -> list[Replayed]:
        """Have each session (or one) apply the writes it set aside, on its own node; what each did.

        Run once the cause is fixed (`whatsapp-bridge spool replay`): an entry that fails again is set
        aside again. Not periodic: a bug fails the same way on every try, and only an operator knows
        when it is fixed.
        """
        handles = self._directory.handles()
        if session_id is not None:
            handles = {session_id: handles[session_id]} if session_id in handles else {}
        results = await asyncio.gather(
            *(asyncio.wait_for(h.replay_failed.remote(), PING_TIMEOUT_S) for h in handles.values()),
            return_exceptions=True,
        )
        done = []
        for sid, result in zip(handles, results, strict=True):
            if isinstance(result, BaseException):
                log.warning("registry: session %s could not replay its set-aside writes (%r)", sid, result)
                done.append(Replayed(sid, None, type(result).__name__))
            else:
                done.append(Replayed(sid, int(result)))
                if result:
                    log.info("registry: session %s requeued %d set-aside writes", sid, result)
        return sorted(done, key=lambda r: r.session_id)

    async def reconcile(self) -> dict[str, int]:
        """One pass: create what is missing, stop orphans past their grace, restart the silent or stuck."""
        # Listed before the rows are read: a row is inserted before its actor is created, so every
        # actor listed here whose row exists is seen with it.
        started = time.monotonic()
        listing = self._directory.look()
        running, unplaced = listing.handles, listing.unplaced
        self._supervision.observe_unplaced(unplaced, log_changes=True)
        stats = {"wanted": -1, "created": 0, "stopped": 0, "replaced": 0, "restarted": 0}
        try:
            rows = await self._store.sessions_to_run()
        except Exception:
            # Nothing is known about which actors should exist: change nothing, restart orphans' grace.
            log.warning("registry: sessions unreadable; this pass changes nothing", exc_info=True)
            self._supervision.rows_unknown()
            return stats
        wanted = {r.id for r in rows}
        stats["wanted"] = len(wanted)
        skip = running.keys() | self._creations.not_to_create(started)
        missing = [r.id for r in rows if r.id not in skip]
        if missing:
            log.info("registry: %d of %d sessions have no actor; starting them", len(missing), len(wanted))
        for sid in missing:
            self._creations.create(sid)
        stats["created"] = len(missing)
        orphans = {sid: h for sid, h in running.items() if sid not in wanted}
        stats["stopped"] = await self._supervision.stop_orphans(orphans, unplaced)
        moving = self._operations.moving()  # a move closes and kills it on purpose
        supervised = {sid: h for sid, h in running.items() if sid in wanted and sid not in moving}
        stats["replaced"], stats["restarted"] = await self._supervision.supervise(supervised, unplaced)
        return stats

    async def creations(self) -> list[tuple[str, float]]:
        """The last 1000 actors this registry created: (session id, unix time), oldest first."""
        return self._creations.history()

    async def ready(self) -> int:
        """Number of reconcile passes that read the sessions (callers wait for >= 1 after a cold start)."""
        return self._passes

    # ------------------------------------------------------------------ loops

    async def _loop(self) -> None:
        while True:
            try:
                stats = await self.reconcile()
                if stats["wanted"] >= 0:
                    self._passes += 1
                if stats["created"] or stats["stopped"] or stats["replaced"] or stats["restarted"]:
                    log.info("registry: reconcile %s", stats)
            except Exception:
                log.exception("registry: reconcile pass failed; retrying")
            await asyncio.sleep(self._config.reconcile_interval_s)

    async def _retention_loop(self) -> None:
        days, every = self._config.message_retention_days, self._config.retention_interval_s
        log.info("registry: purging messages older than %d days every %.0fs", days, every)
        while True:
            try:
                await self._store.purge_old_messages(days)
            except Exception:
                log.warning("registry: message retention failed; next try in %.0fs", every, exc_info=True)
            await asyncio.sleep(every)


_: type[RegistryCalls] = SessionRegistry
