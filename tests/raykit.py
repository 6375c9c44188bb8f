"""Helpers for tests that run real Ray: session configs, waiting for states, Redis frame collection."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any, Concatenate, ParamSpec, TypeVar

import asyncpg
import ray
from ray.cluster_utils import Cluster
from redis.asyncio import Redis

from actors.calls import NetworkControls
from actors.registry import REGISTRY_NAME, RegistryConfig
from actors.session import SessionConfig
from kernel.domain import Chat, Message, Page, SessionStatus, SessionView
from kernel.errors import NoQrShowing
from kernel.ids import actor_name, new_session_id
from kernel.settings import asyncpg_dsn
from persistence.migrate import sim_dsn
from persistence.session_store import SessionStore
from persistence.stores import PostgresStores

T = TypeVar("T")

# Scaled-down whatsmeow timings: a QR round is 0.8 + 5 × 0.3 = 2.3 s.
FAST = {"qr_first_s": 0.8, "qr_next_s": 0.3, "qr_codes": 6}
# For a test that pairs several sessions one after another: the later ones' QR rounds (2 x 2.3 s with
# FAST) ran out before their turn on a loaded machine (qr_timeout in test_cluster, CI).
PATIENT_QR = {"qr_first_s": 120.0}


def session_config(database_url: str, redis_url: str, **overrides: Any) -> SessionConfig:
    values: dict[str, Any] = {
        "backend": "simulated",
        "database_dsn": asyncpg_dsn(database_url),
        "auth_dsn": sim_dsn(database_url),
        "redis_url": redis_url,
        "qr_max_rounds": 2,
        "connect_timeout_s": 8.0,
        "backoff_base_s": 0.5,
        # Tests send as fast as they can; the ones about the pace set it (tests/test_send_pace.py).
        "send_per_minute": 0,
        **FAST,
    }
    values.update(overrides)
    return SessionConfig(**values)


def registry_config(database_url: str, redis_url: str, namespace: str, **overrides: Any) -> RegistryConfig:
    session = session_config(database_url, redis_url, **overrides.pop("session", {}))
    values: dict[str, Any] = {"reload_per_s": 5.0, "reconcile_interval_s": 1.0, **overrides}
    return RegistryConfig(asyncpg_dsn(database_url), namespace, session, **values, stores=PostgresStores())


def unique_namespace() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"


async def fetchval(database_url: str, sql: str, *args: Any) -> Any:
    """One value of one query, on a connection of its own."""
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


async def insert_session(database_url: str, user_id: str = "user-1", slot: int = 1) -> str:
    """A session row as POST /sessions creates it."""
    sid = new_session_id()
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        await conn.execute(
            "INSERT INTO whatsapp_session (id, user_id, slot, status)"
            " VALUES ($1::uuid, $2, $3, 'disconnected')",
            sid,
            user_id,
            slot,
        )
    finally:
        await conn.close()
    return sid


async def stored_chats(database_url: str, session_id: str, limit: int = 50) -> Page[Chat]:
    """A session's chats as stored (what the API reads), on a connection of their own."""
    async with SessionStore(asyncpg_dsn(database_url), session_id) as store:
        return await store.inbox.chats(limit)


async def stored_messages(database_url: str, session_id: str, chat_id: str, limit: int = 50) -> Page[Message]:
    """A chat's messages as stored (what the API reads), on a connection of their own."""
    async with SessionStore(asyncpg_dsn(database_url), session_id) as store:
        return await store.inbox.messages(chat_id, limit)


async def eventually(
    probe: Callable[[], Awaitable[T]], ok: Callable[[T], bool], timeout: float = 20.0, every: float = 0.2
) -> T:
    """Poll `probe` until `ok(value)`; fail with the last value (or error) after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = await probe()
            if ok(last):
                return last
        except Exception as err:
            last = err
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s; last: {last!r}")
        await asyncio.sleep(every)


def handle(session_id: str, namespace: str) -> Any:
    return ray.get_actor(actor_name(session_id), namespace=namespace)


P = ParamSpec("P")
R = TypeVar("R")


def control(
    actor: Any, method: Callable[Concatenate[NetworkControls, P], Awaitable[R]]
) -> Callable[P, Awaitable[R]]:
    """A control of the simulated network (`NetworkControls.scan`...) on a session's actor handle, as the
    /simulator routes call it (`SimulatedSessionActor.control`)."""

    async def call(*args: P.args, **kwargs: P.kwargs) -> R:
        result: R = await actor.control.remote(method.__name__, args, kwargs)
        return result

    return call


async def status_of(session_id: str, namespace: str) -> SessionView:
    view: SessionView = await handle(session_id, namespace).status.remote()
    return view


async def wait_status(
    session_id: str, namespace: str, status: SessionStatus, timeout: float = 30.0
) -> SessionView:
    return await eventually(lambda: status_of(session_id, namespace), lambda v: v.status == status, timeout)


async def pid_of(session_id: str, namespace: str) -> int:
    placement = await handle(session_id, namespace).ping.remote()
    return int(placement.pid)


async def pair(session_id: str, namespace: str, phone: str) -> SessionView:
    """Scan the QR with `phone` on the simulated network and wait for `connected`."""
    for attempt in range(6):
        await wait_status(session_id, namespace, SessionStatus.QR_READY)
        try:
            await control(handle(session_id, namespace), NetworkControls.scan)(
                phone=phone, display_name="Tester"
            )
            break
        except ray.exceptions.RayTaskError as err:
            # The round ended between the status and the scan: as a person would, scan the next QR
            # (test_drain met it three times in a row under a full xdist run).
            if not isinstance(err.cause, NoQrShowing) or attempt == 5:
                raise
            await asyncio.sleep(0.5)
    return await wait_status(session_id, namespace, SessionStatus.CONNECTED)


@dataclass
class Frames:
    """Everything published on `wa:*:{session}` channels, decoded, in arrival order."""

    items: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [body for k, body in self.items if k == kind]

    async def wait_for(
        self, kind: str, pred: Callable[[dict[str, Any]], bool], timeout: float = 20.0
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for k, body in self.items:
                if k == kind and pred(body):
                    return body
            await asyncio.sleep(0.05)
        raise AssertionError(f"no {kind} frame matched within {timeout}s; got {self.items[-10:]}")


@asynccontextmanager
async def frames(redis_url: str, session_id: str) -> Any:
    """Collect a session's Redis frames (`*`: every session's) while the block runs."""
    client = Redis.from_url(redis_url)
    pubsub = client.pubsub()
    await pubsub.psubscribe(f"wa:*:{session_id}")
    got = Frames()

    async def reader() -> None:
        async for msg in pubsub.listen():
            if msg["type"] == "pmessage":
                kind = msg["channel"].decode().split(":", 2)[1]
                got.items.append((kind, json.loads(msg["data"])))

    task = asyncio.create_task(reader())
    try:
        yield got
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await pubsub.aclose()
        await client.aclose()


def kill_namespace_actors(namespace: str) -> None:
    """Kill every actor a test left in its namespace (sessions, dispatchers and registry), for good.

    The registry goes first and is waited for: it recreates the dispatchers and sessions it supervises,
    so one of those killed while it lives can come back under the same name and outlive the test (a
    webhook dispatcher left so would read the next module's event log and deliver its events too)."""

    def named() -> list[str]:
        listed = ray.util.list_named_actors(all_namespaces=True)
        return [entry["name"] for entry in listed if entry["namespace"] == namespace]

    def kill(name: str) -> None:
        try:
            ray.kill(ray.get_actor(name, namespace=namespace), no_restart=True)
        except ValueError:
            pass

    if REGISTRY_NAME in named():
        kill(REGISTRY_NAME)
        deadline = time.monotonic() + 10
        while REGISTRY_NAME in named() and time.monotonic() < deadline:
            time.sleep(0.05)
    for _ in range(3):
        left = named()
        if not left:
            return
        for name in left:
            kill(name)
        time.sleep(0.1)


def ray_init_local(wa_sessions: int = 50) -> None:
    """A local single-node Ray for tests, with the session capacity resource."""
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    ray.init(
        address="local",  # never join a cluster another process recorded in /tmp/ray
        num_cpus=2,
        resources={"wa_session": wa_sessions},
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        object_store_memory=100 * 1024 * 1024,
        logging_level="WARNING",
        configure_logging=False,
    )


_shared_ray = False


@contextmanager
def local_ray() -> Iterator[None]:
    """The local Ray of ray_init_local for the block, shared by the modules that ask one after another.

    Each module works in namespaces of its own and kills its actors for good, so what one leaves behind
    is idle workers only. Starting and stopping Ray cost 4-5 s per module (measured, 22 modules); a module
    that connects this process elsewhere (marker `own_ray`) stops it first (`release_shared_ray`).
    """
    global _shared_ray
    if not _shared_ray:
        ray_init_local()
        _shared_ray = True
    yield


def release_shared_ray() -> None:
    """Stop the shared local Ray, if it runs (a module starts its own next, or the session ends)."""
    global _shared_ray
    if _shared_ray:
        ray.shutdown()
        _shared_ray = False


def new_cluster(head_sessions: int, **system_config: Any) -> Cluster:
    """A `ray.cluster_utils.Cluster` whose head (1 CPU, no dashboard, a small object store) holds
    `head_sessions` sessions; nothing is connected to it yet."""
    head: dict[str, Any] = {
        "num_cpus": 1,
        "resources": {"wa_session": head_sessions},
        "include_dashboard": False,
        "object_store_memory": 80 * 1024 * 1024,
    }
    if system_config:
        head["_system_config"] = system_config
    return Cluster(initialize_head=True, head_node_args=head)


async def registry_passes(registry: Any, more: int, timeout: float = 60) -> None:
    """Wait until the registry has completed `more` further reconcile passes."""
    start = await registry.ready.remote()
    await eventually(registry.ready.remote, lambda n: n >= start + more, timeout=timeout)
