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
import math
import os
import time
from collections import deque
from typing import Any

import ray
from ray._common.constants import HEAD_NODE_RESOURCE_NAME
from ray.actor import ActorHandle

from actors.calls import RegistryCalls
from actors.registry_config import (
    CAPACITY_RESOURCE,
    RegistryConfig,
    create_session_actor,
    session_actor_options,
)
from actors.registry_supervision import (
    CLOSE_TIMEOUT_S,
    PING_TIMEOUT_S,
    RegistrySupervision,
    absent_placement,
)
from actors.supervision import Pacer, Pending, Replayed, Since, Strikes, Writes
from actors.tasks import TaskGroup
from kernel.domain import Placement
from kernel.errors import SessionNotFound
from kernel.ids import actor_name, session_id_of_actor

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


class SessionRegistry(RegistrySupervision):
    def __init__(self, config: RegistryConfig) -> None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        self._config = config
        self._pacer = Pacer(config.reload_per_s)
        self._tasks = TaskGroup("registry")
        self._misses = Strikes()  # placed, not answering pings
        self._stuck = Strikes()  # answering, reporting `stuck`
        self._orphans = Since()  # actors without a row, since the first pass that saw none
        self._pending = Since()  # actors Ray has not placed, since first seen so
        self._pending_logged = (0, 0.0)  # (count, monotonic time) last logged
        self._reports: dict[str, Placement] = {}
        self._creating: set[str] = set()
        # When each destroy finished (monotonic; inf while it runs): no pass recreates the session between
        # the kill and the row's delete, nor a pass that read the rows before the delete
        # (tests/test_autoscaling.py met it: an orphan created after the destroy).
        self._destroyed: dict[str, float] = {}
        self._created: deque[tuple[str, float]] = deque(maxlen=1000)
        self._passes = 0
        self._store = config.stores.fleet(config.database_dsn)
        self._tasks.spawn(self._loop(), "reconcile loop")
        if config.message_retention_days > 0:
            self._tasks.spawn(self._retention_loop(), "message retention")

    def __repr__(self) -> str:
        # Read by Ray once per process, after __init__ (`repr_name` in the dashboard and the GCS actor table).
        node = ray.get_runtime_context().get_node_id()[:12]
        return f"SessionRegistry(namespace={self._config.namespace}, node={node}, pid={os.getpid()})"

    # ------------------------------------------------------------------ public calls

    async def ensure_session(self, session_id: str, node_id: str | None = None) -> None:
        """Create the session's actor if it has none (idempotent); returns once it is scheduled.

        `node_id`: the node to prefer (soft: a full or draining one leaves Ray free to choose; drains
        and rebalances use it, `actors.drain`).
        """
        self._create(session_id, node_id)

    async def destroy_session(self, session_id: str) -> bool:
        """Unlink, stop and forget a session: actor closed and killed, row and keys deleted. Idempotent.

        The only call that logs a device out.
        """
        self._destroyed[session_id] = math.inf
        try:
            handle = self._handle(session_id)
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
        finally:
            self._destroyed[session_id] = time.monotonic()
        self._forget(session_id)
        log.info("registry: session %s destroyed", session_id)
        return existed

    async def where(self, session_id: str) -> Placement:
        """A ping of the session's actor (one Ray has not placed yet answers within PING_TIMEOUT_S or not)."""
        handle = self._handle(session_id)
        if handle is None:
            return absent_placement(session_id)
        return await self._ping(session_id, handle)

    async def placements(self) -> list[Placement]:
        handles = self._session_handles()
        return list(await asyncio.gather(*(self._ping(sid, h) for sid, h in handles.items())))

    async def pending(self) -> Pending:
        """Sessions waiting for Ray to place their actor (a fresh look at the GCS)."""
        unplaced = self._unplaced()
        if unplaced is not None:
            self._pending.observe(unplaced)
        ids = tuple(self._pending.keys())
        return Pending(count=len(ids), oldest_s=self._pending.oldest(), session_ids=ids)

    async def writes(self) -> Writes:
        """The sessions' journals as of the last pass: spooled, set aside, refused by the database."""
        reports = list(self._reports.values())
        return Writes(
            spooled=sum(p.spooled for p in reports),
            failed=sum(p.failed for p in reports),
            refused=tuple(sorted({p.refused for p in reports if p.refused})),
            sessions_failed=tuple(sorted(p.session_id for p in reports if p.failed)),
        )

    async def replay_failed(self, session_id: str | None = None) -> list[Replayed]:
        """Have each session (or one) apply the writes it set aside, on its own node; what each did.

        Run once the cause is fixed (`whatsapp-bridge spool replay`): an entry that fails again is set
        aside again. Not periodic: a bug fails the same way on every try, and only an operator knows
        when it is fixed.
        """
        handles = self._session_handles()
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
        running = self._session_handles()
        unplaced = self._unplaced()
        if unplaced is not None:
            self._pending.observe(unplaced)
            self._log_pending()
        stats = {"wanted": -1, "created": 0, "stopped": 0, "replaced": 0, "restarted": 0}
        try:
            rows = await self._store.sessions_to_run()
        except Exception:
            # Nothing is known about which actors should exist: change nothing, restart orphans' grace.
            log.warning("registry: sessions unreadable; this pass changes nothing", exc_info=True)
            self._orphans.clear()
            return stats
        wanted = {r.id for r in rows}
        stats["wanted"] = len(wanted)
        # Destroys still running, or ended during this pass, may not show in its rows; older ones do.
        self._destroyed = {sid: at for sid, at in self._destroyed.items() if at >= started}
        skip = running.keys() | self._creating | self._destroyed.keys()
        missing = [r.id for r in rows if r.id not in skip]
        if missing:
            log.info("registry: %d of %d sessions have no actor; starting them", len(missing), len(wanted))
        for sid in missing:
            self._create(sid)
        stats["created"] = len(missing)
        orphans = {sid: h for sid, h in running.items() if sid not in wanted}
        stats["stopped"] = await self._stop_orphans(orphans, unplaced)
        supervised = {sid: h for sid, h in running.items() if sid in wanted}
        stats["replaced"], stats["restarted"] = await self._supervise(supervised, unplaced)
        return stats

    async def creations(self) -> list[tuple[str, float]]:
        """The last 1000 actors this registry created: (session id, unix time), oldest first."""
        return list(self._created)

    async def ready(self) -> int:
        """Number of reconcile passes that read the sessions (callers wait for >= 1 after a cold start)."""
        return self._passes

    # ------------------------------------------------------------------ internals

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

    def _create(self, session_id: str, node_id: str | None = None) -> None:
        if session_id in self._creating:
            return
        self._creating.add(session_id)
        self._tasks.spawn(self._create_paced(session_id, node_id), f"create {session_id}")

    async def _create_paced(self, session_id: str, node_id: str | None = None) -> None:
        try:
            if self._handle(session_id) is not None:
                return
            await self._pacer.wait()
            if session_id in self._destroyed:
                return  # destroyed while it waited for its turn
            self._created.append((session_id, time.time()))
            create_session_actor(self._config, session_id, node_id)
            log.info("registry: session %s actor created (%d so far)", session_id, len(self._created))
        finally:
            self._creating.discard(session_id)

    def _handle(self, session_id: str) -> ActorHandle[Any] | None:
        try:
            return ray.get_actor(actor_name(session_id), namespace=self._config.namespace)
        except ValueError:
            return None

    def _session_handles(self) -> dict[str, ActorHandle[Any]]:
        names = ray.util.list_named_actors(all_namespaces=True)
        handles: dict[str, ActorHandle[Any]] = {}
        for entry in names:
            if entry["namespace"] != self._config.namespace:
                continue
            sid = session_id_of_actor(entry["name"])
            if sid is None:
                continue
            handle = self._handle(sid)
            if handle is not None:
                handles[sid] = handle
        return handles


_: type[RegistryCalls] = SessionRegistry
