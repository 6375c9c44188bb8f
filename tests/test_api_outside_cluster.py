"""The API in its own container, outside the Ray cluster's machines (issue 12, item 4).

One machine stands in for two: a Ray head started with `ray start --head` (it holds the session
capacity here), and an "API container" that shares the network but has a process namespace of its own
(`unshare --pid`), as a container does. Ray 2.x picks the node a driver connects through among the
raylet processes it can see: in the container there is none unless deploy/entrypoint.sh starts one.
So `whatsapp-bridge` with `RAY_ADDRESS=<head>` alone fails there, and through the entrypoint it joins
the cluster as a node without session capacity and serves: a session created over HTTP runs on the
head and shows its QR code.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.clikit import clean_env

pytestmark = [pytest.mark.ray, pytest.mark.cluster]

REPO = Path(__file__).resolve().parents[1]
ENTRYPOINT = REPO / "deploy" / "entrypoint.sh"
BIN = Path(sys.executable).parent
HOST = "127.0.0.1"


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A port free now and not handed out before in this run (the OS may give one twice, and Ray
    refuses a node whose components were given the same port: seen once under load)."""
    while True:
        with socket.socket() as sock:
            sock.bind((HOST, 0))
            port: int = sock.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def ray_env(token: str, **extra: str) -> dict[str, str]:
    """A node's or driver's environment: token auth with the cluster's token, no usage stats."""
    return clean_env(
        PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN=token,
        RAY_USAGE_STATS_ENABLED="0",
        AUTOSCALER_METRIC_PORT=str(free_port()),
        DASHBOARD_METRIC_PORT=str(free_port()),
        **extra,
    )


def kill_session(sid: int) -> None:
    """SIGKILL every process of the process session `sid` (a head started with start_new_session)."""
    for proc in psutil.process_iter():
        try:
            if os.getsid(proc.pid) == sid:
                proc.kill()
        except (ProcessLookupError, psutil.Error):
            pass


@contextlib.contextmanager
def started_head(sessions: int, object_store_bytes: int) -> Iterator[tuple[str, str]]:
    """A head on 127.0.0.1 with room for `sessions`: (GCS address, token), in a temp dir of its own.
    Only its processes are stopped afterwards."""
    token = secrets.token_hex(32)
    temp_dir = Path(tempfile.mkdtemp(prefix="wab-h-", dir="/tmp"))  # short: AF_UNIX paths
    address = f"{HOST}:{free_port()}"
    command = [
        str(BIN / "ray"),
        "start",
        "--head",
        f"--node-ip-address={HOST}",
        f"--port={address.rpartition(':')[2]}",
        "--num-cpus=1",
        "--resources=" + json.dumps({"wa_session": sessions}),
        "--include-dashboard=false",
        f"--dashboard-agent-listen-port={free_port()}",
        f"--ray-client-server-port={free_port()}",
        f"--metrics-export-port={free_port()}",
        f"--object-store-memory={object_store_bytes}",
        "--disable-usage-stats",
        f"--temp-dir={temp_dir}",
    ]
    proc = subprocess.Popen(
        command,
        env=ray_env(token),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, out.decode()[-2000:]
        yield address, token
    finally:
        kill_session(proc.pid)
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture
def ray_head() -> Iterator[tuple[str, str]]:
    with started_head(sessions=4, object_store_bytes=100_000_000) as head:
        yield head


def container(env: dict[str, str], *command: str) -> subprocess.Popen[bytes]:
    """`command` in a process namespace of its own (the container's), sharing this machine's network;
    everything in it is killed when the returned process is."""
    return subprocess.Popen(
        ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child", *command],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def stop(proc: subprocess.Popen[bytes]) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)  # --kill-child: the namespace's first process, then all of it
    out, _ = proc.communicate(timeout=30)
    return out.decode(errors="replace")


def api_env(address: str, token: str, database_url: str, redis_url: str, port: int) -> dict[str, str]:
    return ray_env(
        token,
        RAY_ADDRESS=address,
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        WHATSAPP_BRIDGE_API_KEY=secrets.token_urlsafe(24),
        WHATSAPP_BRIDGE_HOST=HOST,
        WHATSAPP_BRIDGE_PORT=str(port),
        RAY_NAMESPACE=f"outside-{uuid.uuid4().hex[:8]}",
        WA_BACKEND="simulated",
        # The container's own node: ports of its own on this shared machine.
        RAY_START_ARGS=(
            f"--node-ip-address={HOST} --dashboard-agent-listen-port={free_port()} "
            f"--metrics-export-port={free_port()}"
        ),
    )


def wait_for(check: Any, timeout: float, what: str, proc: subprocess.Popen[bytes]) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the API container exited while waiting for {what}:\n{stop(proc)[-4000:]}")
        try:
            found = check()
            if found:
                return found
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    pytest.fail(f"no {what} after {timeout} s:\n{stop(proc)[-4000:]}")


def nodes(address: str, token: str) -> list[dict[str, Any]]:
    """The cluster's live nodes, as a driver on this machine (the head's node) sees them."""
    script = (
        f"import json, ray; ray.init(address={address!r}, logging_level='ERROR');"
        "print(json.dumps([n['Resources'] for n in ray.nodes() if n['Alive']]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], env=ray_env(token), capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    found: list[dict[str, Any]] = json.loads(out.stdout.strip().splitlines()[-1])
    return found


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs util-linux unshare (root)")
def test_api_container_joins_the_cluster_as_a_node_and_serves(
    ray_head: tuple[str, str], database_url: str, redis_url: str
) -> None:
    address, token = ray_head

    # Without a node of its own, the documented RAY_ADDRESS=host:port does not work for a driver.
    bare = container(
        {
            **api_env(address, token, database_url, redis_url, free_port()),
            # How long ray.init looks for a node to connect through (Ray's default 60 s; the name is
            # case-sensitive: ray/_private/ray_constants.py).
            "RAY_gcs_server_request_timeout_seconds": "5",
        },
        str(BIN / "whatsapp-bridge"),
    )
    try:
        assert bare.wait(timeout=120) != 0
    finally:
        bare_out = stop(bare)
    assert "No node info found" in bare_out and "whatsapp-bridge failed" in bare_out, bare_out[-3000:]

    # Through the entrypoint it joins as a node without sessions and serves the API.
    port = free_port()
    env = api_env(address, token, database_url, redis_url, port)
    api = container(env, str(ENTRYPOINT))
    try:
        headers = {"X-API-Key": env["WHATSAPP_BRIDGE_API_KEY"], "X-User-Id": "outside-user"}
        with httpx.Client(base_url=f"http://{HOST}:{port}", headers=headers, timeout=10) as client:
            health = wait_for(
                lambda: client.get("/health").json()["components"]["ray"] == "ok", 180, "/health", api
            )
            assert health
            live = nodes(address, token)
            assert len(live) == 2
            api_node = [n for n in live if "node:__internal_head__" not in n]
            assert len(api_node) == 1 and not api_node[0].get("wa_session") and not api_node[0].get("CPU")

            created = client.post("/sessions", json={})
            assert created.status_code == 201, created.text
            sid = created.json()["id"]
            view = wait_for(
                lambda: (s := client.get(f"/sessions/{sid}/status").json())["status"] == "qr_ready" and s,
                90,
                "a QR code",
                api,
            )
            assert view["qr"]
    finally:
        out = stop(api)
    assert "Ray runtime started" in out, out[-3000:]  # the container's own node
