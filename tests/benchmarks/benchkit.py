"""What every benchmark shares: services, Ray start-up, sessions, process accounting, tables and JSON.

- Services: `BENCH_DATABASE_URL` (default `postgresql://postgres@127.0.0.1:5432/wab_bench`, migrated here)
  and `BENCH_REDIS_URL` (default `redis://127.0.0.1:6379/10`). Both are emptied before each run: point
  them at a database and a Redis db of their own.
- Ray: `local_ray()` starts a single node the way the local run does (`api.localstack`'s node settings:
  no metrics, event stats, task events or timeline, a 200 MB object store, fast node-death detection),
  plus `WORKER_ENV`, the per-process settings that cut a session's memory. Everything it started is
  gone when it returns (checked, stragglers SIGKILLed and reported).
- Sessions are real `SessionActor`s created by the real `SessionRegistry` (or, where a benchmark needs a
  debug surface, a subclass with the same actor options); they pair on the simulated network through the
  same `simulate("scan")` call the /simulator route uses; progress is followed on Redis status frames,
  not by polling every actor (polling 200 actors would itself load the 2 cores).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping, Sequence, Set
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import asyncpg
import psutil
from redis.asyncio import Redis

from actors.calls import NetworkControls
from actors.session import SessionConfig
from kernel.settings import asyncpg_dsn

REPO = Path(__file__).resolve().parents[2]
RESULTS_DIR = REPO / "bench-results"
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/wab_bench"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/10"
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Environment of Ray's processes on top of the local run's node settings, inherited by every session
# worker from the raylet. It must be there when a process starts: the Go runtime inside neonize's .so reads
# the environment block the process was started with, never os.environ changes (so runtime.load() setting
# NEONIZE_BOT_TAG does not reach Go), and glibc reads MALLOC_ARENA_MAX at its first malloc.
# MALLOC_ARENA_MAX=2, GOGC and GOMEMLIMIT were measured (bench_levers.py, README.md): no gain idle, not set.
WORKER_ENV: Mapping[str, str] = {"NEONIZE_BOT_TAG": "off"}

# Tables that describe the schema rather than hold data (as in tests/conftest.py).
_KEEP_TABLES = ("alembic_version", "whatsmeow_version")
_SCHEMAS = ("public", "wa_sim", "whatsmeow")


# --- services --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Services:
    database_url: str
    redis_url: str

    @classmethod
    def from_env(cls) -> Services:
        return cls(
            database_url=asyncpg_dsn(os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL)),
            redis_url=os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS_URL),
        )


def migrate(services: Services) -> None:
    """Create the benchmark database if it is missing, and bring it to the latest schema."""
    from persistence.migrate import upgrade

    asyncio.run(_ensure_database(services.database_url))
    upgrade(services.database_url)


async def _ensure_database(url: str) -> None:
    try:
        conn = await asyncpg.connect(url, timeout=10)
    except asyncpg.InvalidCatalogNameError:
        name = url.rpartition("/")[2].partition("?")[0]
        admin = await asyncpg.connect(url.rpartition("/")[0] + "/postgres", timeout=10)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        print(f"created database {name}")
        return
    await conn.close()


async def reset(services: Services) -> None:
    """Empty every bridge, simulator and whatsmeow table and the Redis db."""
    conn = await asyncpg.connect(services.database_url, timeout=10)
    try:
        tables = await conn.fetch(
            "SELECT format('%I.%I', schemaname, tablename) AS name FROM pg_tables"
            " WHERE schemaname = ANY($1::text[]) AND NOT tablename = ANY($2::text[])",
            list(_SCHEMAS),
            list(_KEEP_TABLES),
        )
        if tables:
            await conn.execute(f"TRUNCATE {', '.join(t['name'] for t in tables)} RESTART IDENTITY CASCADE")
    finally:
        await conn.close()
    redis = Redis.from_url(services.redis_url)
    try:
        await redis.flushdb()
    finally:
        await redis.aclose()


async def check_connection_budget(services: Services, sessions: int, per_session: int = 2) -> None:
    """Fail early when PostgreSQL cannot hold the sessions' connections (each keeps its own)."""
    conn = await asyncpg.connect(services.database_url, timeout=10)
    try:
        limit = int(await conn.fetchval("SHOW max_connections"))
        used = int(await conn.fetchval("SELECT count(*) FROM pg_stat_activity"))
    finally:
        await conn.close()
    needed = sessions * per_session + 20
    if used + needed > limit:
        raise SystemExit(
            f"PostgreSQL allows {limit} connections, {used} are in use, and {sessions} sessions need about "
            f"{needed}: raise max_connections (e.g. 2 x sessions + 100) or point BENCH_DATABASE_URL elsewhere"
        )


async def insert_sessions(services: Services, count: int, prefix: str = "bench") -> list[str]:
    """`count` unpaired session rows (one user each, slot 1), as POST /sessions creates them."""
    from kernel.ids import new_session_id

    sids: list[str] = [new_session_id() for _ in range(count)]
    conn = await asyncpg.connect(services.database_url, timeout=10)
    try:
        await conn.executemany(
            "INSERT INTO whatsapp_session (id, user_id, slot, status)"
            " VALUES ($1::uuid, $2, 1, 'disconnected')",
            [(sid, f"{prefix}-{i}") for i, sid in enumerate(sids)],
        )
    finally:
        await conn.close()
    return sids


def session_config(services: Services, backend: str = "simulated", **overrides: Any) -> SessionConfig:
    """A session's configuration for benchmarks: real timings, except a QR round long enough to scan."""
    from persistence.migrate import auth_dsn, sim_dsn

    values: dict[str, Any] = {
        "backend": backend,
        "database_dsn": services.database_url,
        "auth_dsn": auth_dsn(services.database_url)
        if backend == "neonize"
        else sim_dsn(services.database_url),
        "redis_url": services.redis_url,
        # Sessions are created ~1-2/s and paired once they show a QR: the first code must outlive that.
        "qr_first_s": 900.0,
        "qr_next_s": 60.0,
        "connect_timeout_s": 120.0,
        "send_per_minute": 0,  # benchmarks measure the bridge, not the pace
    }
    values.update(overrides)
    return SessionConfig(**values)


def phone_of(index: int) -> str:
    return f"+1555{7000000 + index:07d}"


# --- Ray ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RayNode:
    address: str
    namespace: str
    capacity: int
    worker_env: Mapping[str, str]
    dashboard: bool


def ray_node_env(worker_env: Mapping[str, str]) -> dict[str, str]:
    """Environment for Ray's processes: the local run's node settings plus the session workers' ones."""
    from api.localstack import RAY_NODE_ENV

    return {**RAY_NODE_ENV, **worker_env}


def _descendants() -> list[psutil.Process]:
    children: list[psutil.Process] = psutil.Process().children(recursive=True)
    return children


def stop_processes(procs: Sequence[psutil.Process], what: str, grace_s: float = 15.0) -> list[int]:
    """Wait for `procs` to end, SIGKILL what is left; returns the pids that had to be killed."""
    deadline = time.monotonic() + grace_s
    alive = [p for p in procs if _running(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = [p for p in alive if _running(p)]
    killed = []
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(signal.SIGKILL)
            killed.append(proc.pid)
    if killed:
        print(f"warning: {len(killed)} {what} processes outlived shutdown and were killed: {killed}")
    return killed


def _running(proc: psutil.Process) -> bool:
    try:
        return bool(proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


@contextlib.contextmanager
def local_ray(
    capacity: int,
    *,
    namespace: str = "bench",
    worker_env: Mapping[str, str] = WORKER_ENV,
    dashboard: bool = True,
) -> Iterator[RayNode]:
    """A single-node Ray started by this process, configured like the local run; stopped on exit."""
    import ray

    from api.localstack import RAY_OBJECT_STORE_BYTES, free_port

    saved = dict(os.environ)
    os.environ.update(ray_node_env(worker_env))
    # Fixed defaults would collide with any other Ray on the machine.
    os.environ["AUTOSCALER_METRIC_PORT"] = str(free_port())
    os.environ["DASHBOARD_METRIC_PORT"] = str(free_port())
    procs: list[psutil.Process] = []
    try:
        context: Any = ray.init(
            address="local",  # always a new node, never a Ray someone else started on this machine
            num_cpus=os.cpu_count() or 2,
            resources={"wa_session": capacity},
            namespace=namespace,
            include_dashboard=dashboard,
            dashboard_host="127.0.0.1",
            dashboard_port=free_port(),
            _node_ip_address="127.0.0.1",
            object_store_memory=RAY_OBJECT_STORE_BYTES,
            logging_level=logging.WARNING,
            configure_logging=False,
            log_to_driver=False,
        )
        yield RayNode(context.address_info["gcs_address"], namespace, capacity, dict(worker_env), dashboard)
    finally:
        procs = _ray_tree()
        ray.shutdown()
        os.environ.clear()
        os.environ.update(saved)
        stop_processes(procs, "Ray")


@dataclass(frozen=True, slots=True)
class LocalCluster:
    cluster: Any  # ray.cluster_utils.Cluster
    nodes: list[Any]  # every node, head first (each has .node_id)
    namespace: str


@contextlib.contextmanager
def local_cluster(
    sessions_per_node: int,
    nodes: int = 3,
    *,
    namespace: str = "bench",
    worker_env: Mapping[str, str] = WORKER_ENV,
) -> Iterator[LocalCluster]:
    """`nodes` Ray nodes on this machine (ray.cluster_utils.Cluster), each holding sessions; stopped on exit.

    Addresses are left to Cluster (giving only the head `node_ip_address` puts the workers elsewhere and
    `ray.init` times out), like tests/test_cluster.py.
    """
    import ray
    from ray.cluster_utils import Cluster

    saved = dict(os.environ)
    os.environ.update(ray_node_env(worker_env))
    store = 80 * 1024 * 1024
    cpus = max(1, (os.cpu_count() or 2) // nodes)
    cluster: Any = None
    try:
        cluster = Cluster(
            initialize_head=True,
            head_node_args={
                "num_cpus": cpus,
                "resources": {"wa_session": sessions_per_node},
                "include_dashboard": False,
                "object_store_memory": store,
            },
        )
        workers = [
            cluster.add_node(
                num_cpus=cpus, resources={"wa_session": sessions_per_node}, object_store_memory=store
            )
            for _ in range(nodes - 1)
        ]
        _forget_current_cluster(cluster.address)
        ray.init(
            address=cluster.address,
            namespace=namespace,
            logging_level=logging.WARNING,
            configure_logging=False,
        )
        cluster.wait_for_nodes()
        yield LocalCluster(cluster, [cluster.head_node, *workers], namespace)
    finally:
        procs = _ray_tree()
        ray.shutdown()
        if cluster is not None:
            cluster.shutdown()
        os.environ.clear()
        os.environ.update(saved)
        stop_processes(procs, "Ray")


def _forget_current_cluster(address: str) -> None:
    """A head records itself in /tmp/ray/ray_current_cluster, where anyone's `ray.init()` without an
    address finds it and joins: take ours out, other people's tests run on this machine too."""
    path = Path("/tmp/ray/ray_current_cluster")
    with contextlib.suppress(OSError):
        if path.read_text().strip() == address:
            path.unlink()


def _ray_tree() -> list[psutil.Process]:
    """This driver's Ray processes and every worker of its raylets (workers are the raylet's children)."""
    return _descendants()


def kill_actors(namespace: str) -> None:
    """Kill every named actor in `namespace` for good (sessions and the registry)."""
    import ray

    for entry in ray.util.list_named_actors(all_namespaces=True):
        if entry["namespace"] == namespace:
            with contextlib.suppress(ValueError):
                ray.kill(ray.get_actor(entry["name"], namespace=namespace), no_restart=True)


# --- processes ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Mem:
    """From /proc/<pid>/smaps_rollup, in MiB."""

    pss: float
    rss: float
    uss: float  # private clean + private dirty
    anon: float

    @classmethod
    def of(cls, pid: int) -> Mem | None:
        values: dict[str, float] = {}
        try:
            with open(f"/proc/{pid}/smaps_rollup") as rollup:
                for line in rollup:
                    parts = line.split()
                    if len(parts) == 3 and parts[2] == "kB":
                        values[parts[0].rstrip(":")] = int(parts[1]) / 1024
        except OSError:
            return None
        return cls(
            pss=values.get("Pss", 0.0),
            rss=values.get("Rss", 0.0),
            uss=values.get("Private_Clean", 0.0) + values.get("Private_Dirty", 0.0),
            anon=values.get("Anonymous", 0.0),
        )


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process so far (/proc/<pid>/stat), in seconds."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of stat(5)


def role_of(proc: psutil.Process) -> str:
    """A short name for a Ray process: gcs_server, raylet, ray::SessionActor, ray::IDLE, dashboard..."""
    try:
        cmd: list[str] = proc.cmdline()
    except psutil.Error:
        return "gone"
    head = cmd[0] if cmd else str(proc.name())
    if head.startswith("ray::"):
        return head.split()[0].split(".")[0]
    joined = " ".join(cmd)
    for needle, role in (
        ("gcs_server", "gcs_server"),
        ("raylet/raylet", "raylet"),
        ("log_monitor", "log_monitor"),
        ("dashboard/dashboard.py", "dashboard"),
        ("dashboard/agent.py", "dashboard_agent"),
        ("runtime_env/agent", "runtime_env_agent"),
        ("autoscaler/_private/monitor", "monitor"),
        ("default_worker.py", "worker (starting)"),
    ):
        if needle in joined:
            return role
    return os.path.basename(head)


@dataclass(slots=True)
class CpuWindow:
    """CPU used by processes between `start()` and `stop()`, as a fraction of one core."""

    pids: Sequence[int]
    _start: dict[int, float] = field(default_factory=dict)
    _t0: float = 0.0

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._start = {pid: s for pid in self.pids if (s := cpu_seconds(pid)) is not None}

    def stop(self) -> tuple[float, dict[int, float]]:
        """(window length in seconds, pid → share of one core); pids gone meanwhile are left out."""
        wall = time.monotonic() - self._t0
        shares = {}
        for pid, before in self._start.items():
            after = cpu_seconds(pid)
            if after is not None:
                shares[pid] = (after - before) / wall
        return wall, shares


def ray_processes(exclude: Set[int] = frozenset()) -> dict[int, str]:
    """pid → role of every Ray process of this driver except `exclude` (e.g. the session workers)."""
    return {p.pid: role_of(p) for p in _ray_tree() if p.pid not in exclude and _running(p)}


SERVICE_NAMES = {"postgres": "postgresql", "redis-server": "redis", "valkey-server": "redis"}


def service_processes() -> dict[int, str]:
    """pid → "postgresql" or "redis" for every such server process on this machine (they share the CPU)."""
    found = {}
    for proc in psutil.process_iter(["name"]):
        role = SERVICE_NAMES.get(proc.info["name"] or "")
        if role is not None:
            found[proc.pid] = role
    return found


def cpu_by_role(shares: Mapping[int, float], roles: Mapping[int, str]) -> dict[str, float]:
    """% of one core per role (several processes of a role added up), busiest first."""
    total: dict[str, float] = {}
    for pid, role in roles.items():
        total[role] = total.get(role, 0.0) + 100 * shares.get(pid, 0.0)
    return dict(sorted(total.items(), key=lambda kv: -kv[1]))


# --- sessions ----------------------------------------------------------------------------------------------


@dataclass(slots=True)
class StatusWatch:
    """The latest status of each watched session, from its Redis frames, with when it changed."""

    redis_url: str
    sids: set[str]
    status: dict[str, str] = field(default_factory=dict)
    reason: dict[str, str | None] = field(default_factory=dict)
    since: dict[str, float] = field(default_factory=dict)
    first: dict[tuple[str, str], float] = field(default_factory=dict)  # (sid, status) → first seen
    qr_at: dict[str, float] = field(default_factory=dict)
    on_status: Callable[[str, str], None] | None = None
    _task: asyncio.Task[None] | None = None
    _redis: Redis | None = None

    async def __aenter__(self) -> StatusWatch:
        self._redis = Redis.from_url(self.redis_url)
        pubsub = self._redis.pubsub()
        await pubsub.psubscribe("wa:status:*", "wa:qr:*")
        self._task = asyncio.create_task(self._read(pubsub))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._redis is not None:
            await self._redis.aclose()

    async def _read(self, pubsub: Any) -> None:
        try:
            async for msg in pubsub.listen():
                if msg["type"] != "pmessage":
                    continue
                _, kind, sid = msg["channel"].decode().split(":", 2)
                if sid not in self.sids:
                    continue
                now = time.monotonic()
                if kind == "qr":
                    self.qr_at.setdefault(sid, now)
                    continue
                body = json.loads(msg["data"])
                self.record(sid, body["status"], body.get("reason"), now)
        finally:
            await pubsub.aclose()

    def record(self, sid: str, status: str, reason: str | None, at: float) -> None:
        if self.status.get(sid) != status:
            self.since[sid] = at
            self.first.setdefault((sid, status), at)
        self.status[sid], self.reason[sid] = status, reason
        if self.on_status is not None:
            self.on_status(sid, status)

    def count(self, status: str, sids: Sequence[str] | None = None) -> int:
        return sum(1 for sid in (sids or self.sids) if self.status.get(sid) == status)

    async def wait(
        self,
        done: Callable[[], bool],
        timeout: float,
        *,
        progress: Callable[[], str] | None = None,
        poll: Callable[[], Awaitable[None]] | None = None,
        poll_every: float = 10.0,
    ) -> bool:
        """Until `done()` (True) or `timeout` (False); `poll` repairs missed frames now and then."""
        deadline = time.monotonic() + timeout
        next_poll = time.monotonic() + poll_every
        last_print = time.monotonic()
        while not done():
            now = time.monotonic()
            if now > deadline:
                return False
            if poll is not None and now >= next_poll:
                await poll()
                next_poll = now + poll_every
            if progress is not None and now - last_print >= 10:
                print(f"  ... {progress()}", flush=True)
                last_print = now
            await asyncio.sleep(0.1)
        return True


def session_handle(sid: str, namespace: str) -> Any:
    import ray

    from kernel.ids import actor_name

    return ray.get_actor(actor_name(sid), namespace=namespace)


async def ping_all(sids: Sequence[str], namespace: str, timeout: float = 10.0) -> dict[str, Any]:
    """sid → Placement (pid, node, status) of every session that answers within `timeout`."""

    async def one(sid: str) -> tuple[str, Any]:
        try:
            return sid, await asyncio.wait_for(session_handle(sid, namespace).ping.remote(), timeout)
        except Exception:
            return sid, None

    results = await asyncio.gather(*(one(sid) for sid in sids))
    return {sid: p for sid, p in results if p is not None}


async def poll_into(watch: StatusWatch, sids: Sequence[str], namespace: str, status: str) -> None:
    """Ask the sessions not yet in `status` directly (a frame can be missed while an actor starts)."""
    lagging = [sid for sid in sids if watch.status.get(sid) != status]
    for sid, placement in (await ping_all(lagging, namespace, timeout=5.0)).items():
        if placement.status is not None and watch.status.get(sid) != str(placement.status):
            watch.record(sid, str(placement.status), None, time.monotonic())


Scan = Callable[[str, str, str], Awaitable[object]]  # (session id, phone, display name)


def actor_scan(namespace: str) -> Scan:
    """Scan through the session actor (what the /simulator/sessions/{id}/scan route calls)."""

    async def scan(sid: str, phone: str, name: str) -> object:
        args = {"phone": phone, "display_name": name}
        return await asyncio.wait_for(
            session_handle(sid, namespace).control.remote(NetworkControls.scan.__name__, (), args), 30
        )

    return scan


class Pairer:
    """Scans each session's QR as soon as it shows one (session i of the run gets `phone_of(i)`)."""

    def __init__(self, sids: Sequence[str], scan: Scan, first: int = 0) -> None:
        self._index = {sid: first + i for i, sid in enumerate(sids)}
        self._scan_call = scan
        self._started: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.failures: dict[str, str] = {}

    def on_status(self, sid: str, status: str) -> None:
        if status == "qr_ready" and sid not in self._started:
            self._started.add(sid)
            task = asyncio.get_running_loop().create_task(self._scan(sid))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _scan(self, sid: str) -> None:
        i = self._index[sid]
        try:
            await self._scan_call(sid, phone_of(i), f"Bench {i}")
        except Exception as err:
            self.failures[sid] = repr(err)
            self._started.discard(sid)  # scanned again if it shows a QR again

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def pair_all(
    watch: StatusWatch,
    sids: Sequence[str],
    namespace: str,
    timeout: float,
    scan: Scan | None = None,
    first: int = 0,
) -> tuple[bool, float]:
    """Pair every session on the simulated network as it comes up; (all connected, seconds taken).

    `first`: index of `sids[0]` in the run, so that every session of a run gets a phone of its own.
    """
    pairer = Pairer(sids, scan or actor_scan(namespace), first)
    watch.on_status = pairer.on_status
    for sid in sids:  # sessions already showing a QR before the watch saw them
        if watch.status.get(sid) == "qr_ready":
            pairer.on_status(sid, "qr_ready")
    started = time.monotonic()
    try:
        ok = await watch.wait(
            lambda: watch.count("connected", sids) == len(sids),
            timeout,
            progress=lambda: (
                f"{watch.count('connected', sids)}/{len(sids)} connected, "
                f"{watch.count('qr_ready', sids)} showing a QR"
            ),
            poll=lambda: _poll_and_scan(watch, pairer, sids, namespace),
        )
    finally:
        watch.on_status = None
        await pairer.close()
    # A refused pairing shows `connected` for a moment before the session recycles: ask again, for up
    # to 30 s (on an overloaded node, at a capacity step past its limit, a ping can time out).
    if ok:
        for _ in range(30):
            await asyncio.sleep(1.0)
            placements = await ping_all(sids, namespace)
            ok = sum(1 for p in placements.values() if p.status == "connected") == len(sids)
            if ok:
                break
    if pairer.failures:
        example = next(iter(pairer.failures.values()))
        print(f"  scan failures (retried): {len(pairer.failures)}, e.g. {example}")
    return ok, time.monotonic() - started


async def _poll_and_scan(watch: StatusWatch, pairer: Pairer, sids: Sequence[str], namespace: str) -> None:
    await poll_into(watch, sids, namespace, "connected")
    for sid in sids:
        if watch.status.get(sid) == "qr_ready":
            pairer.on_status(sid, "qr_ready")


# --- results -----------------------------------------------------------------------------------------------


def _first_line(path: str, key: str) -> str | None:
    with contextlib.suppress(OSError), open(path) as src:
        for line in src:
            if line.startswith(key):
                return line.partition(":")[2].strip()
    return None


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    """Where and with what a figure was measured."""
    mem_total = _first_line("/proc/meminfo", "MemTotal")
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
        "cpu_model": _first_line("/proc/cpuinfo", "model name"),
        "cores": os.cpu_count(),
        "ram_gib": round(int(mem_total.split()[0]) / 1024 / 1024, 1) if mem_total else None,
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
        "kernel": platform.release(),
        "python": platform.python_version(),
        "versions": {d: _version(d) for d in ("ray", "neonize", "redis", "asyncpg", "fastapi", "uvicorn")},
        "commit": commit or None,
    }


def percentiles(values: Sequence[float]) -> dict[str, float | int | None]:
    """count, mean, p50, p90, p99, max (nearest-rank) of `values`."""
    if not values:
        return {"count": 0, "mean": None, "p50": None, "p90": None, "p99": None, "max": None}
    ordered = sorted(values)

    def rank(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.5) - 1))]

    return {
        "count": len(ordered),
        "mean": sum(ordered) / len(ordered),
        "p50": rank(0.50),
        "p90": rank(0.90),
        "p99": rank(0.99),
        "max": ordered[-1],
    }


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[fmt(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    print(f"\n{title}")
    print("  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))
    sys.stdout.flush()


def write_result(name: str, params: Mapping[str, Any], results: Any, machine: Mapping[str, Any]) -> Path:
    """bench-results/<name>-<UTC time>.json with the machine, the parameters and the figures."""
    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS_DIR / f"{name}-{stamp}.json"
    payload = {"benchmark": name, "machine": dict(machine), "params": dict(params), "results": results}
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    print(f"\nwrote {path.relative_to(REPO)}")
    return path


def parse_sizes(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parse_env(pairs: Sequence[str]) -> dict[str, str]:
    """KEY=VALUE items (KEY= alone removes a default)."""
    env = dict(WORKER_ENV)
    for pair in pairs:
        key, _, value = pair.partition("=")
        if value:
            env[key] = value
        else:
            env.pop(key, None)
    return env


def ray_options(p: argparse.ArgumentParser, *, timeout_s: float, timeout_help: str | None = None) -> None:
    """The options every benchmark that starts Ray takes."""
    p.add_argument("--timeout", type=float, default=timeout_s, help=timeout_help)
    p.add_argument("--no-dashboard", dest="dashboard", action="store_false")
    p.add_argument("--worker-env", action="append", default=[], help="KEY=VALUE for Ray's processes")


def run_benchmark(
    name: str,
    args: argparse.Namespace,
    run: Callable[[argparse.Namespace], Coroutine[Any, Any, Any]],
    report: Callable[[Any], None],
) -> None:
    """Migrate the services, run, print the table, write the JSON with the machine it ran on."""
    machine = machine_info()
    migrate(Services.from_env())
    out = asyncio.run(run(args))
    report(out)
    write_result(name, vars(args), out, machine)
