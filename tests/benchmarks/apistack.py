"""The service as it runs, for the API benchmarks: `whatsapp-bridge` in its own process, on the benchmark's
Ray node (`RAY_ADDRESS`), PostgreSQL and Redis, with the simulated network; HTTP through httpx and
WebSockets through `websockets`, both as the web inbox uses them (DESIGN.md's contract).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

from tests.benchmarks import benchkit as bk

START_TIMEOUT_S = 180.0


@dataclass(frozen=True, slots=True)
class Api:
    base_url: str
    ws_url: str
    api_key: str
    namespace: str
    pid: int
    log_path: Path

    def headers(self, user: str | None = None) -> dict[str, str]:
        found = {"X-API-Key": self.api_key}
        if user is not None:
            found["X-User-Id"] = user
        return found

    def client(self, *, connections: int = 100, timeout: float = 60.0) -> httpx.AsyncClient:
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        return httpx.AsyncClient(
            base_url=self.base_url, headers=self.headers(), timeout=timeout, limits=limits
        )


@contextlib.contextmanager
def api_server(
    node: bk.RayNode, services: bk.Services, *, rate: float = 2.0, env: Mapping[str, str] | None = None
) -> Iterator[Api]:
    """`whatsapp-bridge` on the node and services; SIGTERM (then SIGKILL) on exit; logs in bench-results."""
    from api.localstack import free_port

    port = free_port()
    api_key = secrets.token_urlsafe(24)
    bk.RESULTS_DIR.mkdir(exist_ok=True)
    log_path = bk.RESULTS_DIR / f"api-{node.namespace}.log"
    values = {
        **os.environ,
        "DATABASE_URL": services.database_url,
        "REDIS_URL": services.redis_url,
        "RAY_ADDRESS": node.address,
        "RAY_NAMESPACE": node.namespace,
        "WHATSAPP_BRIDGE_API_KEY": api_key,
        "WHATSAPP_BRIDGE_HOST": "127.0.0.1",
        "WHATSAPP_BRIDGE_PORT": str(port),
        "WA_BACKEND": "simulated",
        "SIM_QR_FIRST_S": "900",
        "SIM_QR_NEXT_S": "60",
        "SESSION_RELOAD_PER_S": str(rate),
        "WA_SESSIONS_PER_NODE": str(node.capacity),
        "LOG_LEVEL": "WARNING",
        "SEND_PER_MINUTE": "0",  # benchmarks measure the bridge, not the pace
        **(env or {}),
    }
    command = [str(Path(sys.executable).with_name("whatsapp-bridge"))]
    with tempfile.TemporaryDirectory(prefix="wab-bench-api-") as cwd, log_path.open("w") as log:
        values["WHATSAPP_BRIDGE_DATA_DIR"] = cwd  # unused with every URL set; never the repo's .data
        proc = subprocess.Popen(
            command, env=values, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            api = Api(
                f"http://127.0.0.1:{port}",
                f"ws://127.0.0.1:{port}/ws",
                api_key,
                node.namespace,
                proc.pid,
                log_path,
            )
            _wait_healthy(api, proc)
            yield api
        finally:
            _stop(proc)


def _wait_healthy(api: Api, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"whatsapp-bridge exited ({proc.returncode}); see {api.log_path}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(api.base_url + "/health", timeout=5).status_code == 200:
                return
        time.sleep(0.5)
    raise RuntimeError(f"whatsapp-bridge not healthy within {START_TIMEOUT_S:.0f}s; see {api.log_path}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


# --- sessions through the API ----------------------------------------------------------------------------


def user_of(index: int, per_user: int = 3) -> str:
    return f"bench-user-{index // per_user}"


async def create_sessions(api: Api, client: httpx.AsyncClient, count: int, *, first: int = 0) -> list[str]:
    """POST /sessions `count` times (3 numbers per user), in order; the new session ids."""
    sids = []
    for i in range(first, first + count):
        reply = await client.post("/sessions", json={}, headers=api.headers(user_of(i)))
        reply.raise_for_status()
        sids.append(reply.json()["id"])
    return sids


def http_scan(api: Api, client: httpx.AsyncClient) -> bk.Scan:
    """Scan through POST /simulator/sessions/{id}/scan."""

    async def scan(sid: str, phone: str, name: str) -> object:
        reply = await client.post(
            f"/simulator/sessions/{sid}/scan", json={"phone": phone, "displayName": name}
        )
        reply.raise_for_status()
        return reply.json()

    return scan


async def connect_sessions(
    api: Api, client: httpx.AsyncClient, count: int, timeout: float, *, first: int = 0
) -> list[str]:
    """Create `count` sessions through the API and pair each by a simulator scan; their ids once connected."""
    sids: list[str] = []
    async with bk.StatusWatch(api_redis_url(), set()) as watch:
        created = await create_sessions(api, client, count, first=first)
        sids.extend(created)
        watch.sids.update(created)
        await bk.poll_into(watch, created, api.namespace, "connected")
        scan = http_scan(api, client)
        ok, took = await bk.pair_all(watch, created, api.namespace, timeout, scan=scan, first=first)
        if not ok:
            raise RuntimeError(f"only {watch.count('connected', created)} of {count} sessions connected")
    print(f"  {count} sessions created and paired through the API in {took:.0f}s", flush=True)
    return sids


def api_redis_url() -> str:
    return bk.Services.from_env().redis_url


# --- WebSocket ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Frames:
    """Frames of one WebSocket with their arrival time (monotonic), read in the background."""

    conn: ClientConnection
    items: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    waiters: list[tuple[Any, asyncio.Future[float]]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    async def read(self) -> None:
        async for raw in self.conn:
            at = time.monotonic()
            frame = json.loads(raw)
            self.items.append((at, frame))
            waiting = []
            for pred, future in self.waiters:
                if future.done():
                    continue  # given up on (timed out)
                if pred(frame):
                    future.set_result(at)
                else:
                    waiting.append((pred, future))
            self.waiters = waiting

    def expect(self, pred: Any) -> asyncio.Future[float]:
        """A future set to the arrival time of the first frame (from now on) that matches `pred`."""
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.waiters.append((pred, future))
        return future


@contextlib.asynccontextmanager
async def websocket(api: Api, user: str) -> AsyncIterator[Frames]:
    conn = await asyncio.wait_for(
        connect(api.ws_url, additional_headers=api.headers(user), open_timeout=10), 15
    )
    frames = Frames(conn)
    frames.task = asyncio.create_task(frames.read())
    try:
        yield frames
    finally:
        await conn.close()
        frames.task.cancel()
        await asyncio.gather(frames.task, return_exceptions=True)


# --- load --------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Latencies:
    ok: list[float] = field(default_factory=list)  # seconds
    errors: dict[str, int] = field(default_factory=dict)

    def add_error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1

    def summary(self, wall_s: float) -> dict[str, Any]:
        ms = [x * 1000 for x in self.ok]
        return {
            "requests": len(ms),
            "errors": dict(self.errors),
            "per_s": round(len(ms) / wall_s, 1) if wall_s else None,
            "ms": bk.percentiles(ms),
        }


async def timed(client: httpx.AsyncClient, method: str, url: str, into: Latencies, **kwargs: Any) -> bool:
    started = time.perf_counter()
    try:
        reply = await client.request(method, url, **kwargs)
    except httpx.HTTPError as err:
        into.add_error(type(err).__name__)
        return False
    if reply.status_code >= 400:
        into.add_error(str(reply.status_code))
        return False
    into.ok.append(time.perf_counter() - started)
    return True


async def paced(rate: float, seconds: float, call: Any) -> float:
    """Start `call()` `rate` times a second for `seconds` (open loop: a slow call does not slow the rate)."""
    tasks: set[asyncio.Task[Any]] = set()
    started = time.monotonic()
    i = 0
    while (now := time.monotonic()) - started < seconds:
        due = started + i / rate
        if due > now:
            await asyncio.sleep(due - now)
        task = asyncio.create_task(call(i))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        i += 1
    await asyncio.gather(*tasks, return_exceptions=True)
    return time.monotonic() - started


def cpu_of(pids: Sequence[int]) -> dict[int, float | None]:
    return {pid: bk.cpu_seconds(pid) for pid in pids}


class HealthProbe:
    """`GET /health` at `rate`/s from a process of its own (tests.benchmarks.health_probe), so that the
    benchmark's own busy event loop does not count as the API's latency."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self._proc = proc

    @classmethod
    async def start(cls, api: Api, rate: float) -> HealthProbe:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.benchmarks.health_probe",
            f"{api.base_url}/health",
            str(rate),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        return cls(proc)

    async def stop(self) -> Latencies:
        assert self._proc.stdin is not None
        self._proc.stdin.close()
        out, _ = await self._proc.communicate()
        found = json.loads(out)
        return Latencies(found["ok"], found["errors"])
