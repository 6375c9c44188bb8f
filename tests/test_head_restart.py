"""The Ray head goes away: sessions keep running through a GCS restart, and the API never exits.

A `ray.cluster_utils.Cluster` with GCS fault tolerance on an external Redis (an embedded Valkey), the
real `whatsapp-bridge` as the API (a Ray driver), a paired session on the simulated network. The GCS is
killed and started again; then the whole head is lost for good.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from ray.cluster_utils import Cluster

from api.cli import GCS_RECONNECT_ENV
from api.localstack import EmbeddedValkey
from tests import raykit
from tests.apiproc import Api, spawn_cluster_api
from tests.clikit import interrupt

pytestmark = [pytest.mark.ray, pytest.mark.cluster, pytest.mark.own_ray]

START_TIMEOUT_S = 90.0
# The control driver's reconnect timeout: Ray's 60 s default, scaled down so that the test stays short.
SHORT_RECONNECT_S = 3
REQUEST_BOUND_S = 15.0  # no request may take longer while the head is away (api/handles.py: 10 s)


@pytest.fixture
def gcs_storage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The GCS keeps its tables in a Redis of its own (a namespace of its own too, as in production).

    Not the shared test Redis: every test flushes that one when it starts, tables included.
    """
    namespace = f"wab-gcs-{uuid.uuid4().hex[:8]}"
    with EmbeddedValkey(tmp_path / "gcs-redis") as store:
        monkeypatch.setenv("RAY_REDIS_ADDRESS", f"127.0.0.1:{store.port}")
        monkeypatch.setenv("RAY_external_storage_namespace", namespace)
        yield namespace


@pytest.fixture
def cluster(gcs_storage: str) -> Iterator[Cluster]:
    """The cluster; this process is no driver of it (it reaches the sessions through the API), so nothing
    here waits on a head that is gone (a driver's ray.shutdown() then takes 18 s)."""
    cluster = raykit.new_cluster(head_sessions=10)
    try:
        yield cluster
    finally:
        cluster.shutdown()


def _spawn_api(tmp_path: Path, cluster: Cluster, database_url: str, redis_url: str, namespace: str) -> Api:
    return spawn_cluster_api(
        tmp_path,
        cluster.address,
        database_url,
        redis_url,
        namespace,
        user="head-user",
        request_bound_s=REQUEST_BOUND_S,
        SIM_QR_FIRST_S="1.0",
        SIM_QR_NEXT_S="1.0",
        SIM_QR_CODES="30",
        RECONCILE_INTERVAL_S="1",
        # What a node's environment may say; the API must wait for the head regardless.
        **{GCS_RECONNECT_ENV: str(SHORT_RECONNECT_S)},
    )


def _pid(api: Api, sid: str) -> int:
    """The session's process, as `GET /ops/sessions` shows it."""
    rows = api.get("/ops/sessions").json()["items"]
    return int(next(row["pid"] for row in rows if row["sessionId"] == sid))


def _spawn_short_driver(cluster: Cluster, tmp_path: Path) -> subprocess.Popen[str]:
    """A plain driver with a short reconnect timeout: what the API was before (Ray's default, scaled)."""
    code = "import ray, time\nray.init(address=%r)\nprint('ready', flush=True)\nwhile True: time.sleep(1)\n"
    env = {**os.environ, GCS_RECONNECT_ENV: str(SHORT_RECONNECT_S)}
    errors = tmp_path / "control.log"
    with errors.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", code % cluster.address],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready", errors.read_text()
    return proc


@pytest.mark.timeout(300)
def test_the_api_and_the_sessions_outlive_the_head(
    cluster: Cluster, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    namespace = raykit.unique_namespace()
    control = _spawn_short_driver(cluster, tmp_path)
    api = _spawn_api(tmp_path, cluster, database_url, redis_url, namespace)
    try:
        api.until("healthy", lambda: api.get("/health").json()["status"] == "ok", START_TIMEOUT_S)
        created = api.post("/sessions", {"slot": 1})
        assert created.status_code == 201, created.text
        sid = created.json()["id"]
        api.until("qr", lambda: api.get(f"/sessions/{sid}/status").json()["status"] == "qr_ready")
        scan = {"phone": "+15550001111", "displayName": "Tester"}
        assert api.post(f"/simulator/sessions/{sid}/scan", scan).status_code == 200
        api.until("connected", lambda: api.get(f"/sessions/{sid}/status").json()["status"] == "connected")
        pid = _pid(api, sid)

        # 1. The GCS dies and stays away longer than the control driver's reconnect timeout.
        cluster.head_node.kill_gcs_server()
        assert control.wait(timeout=SHORT_RECONNECT_S + 30) != 0, "a driver with a short timeout ends"
        health = api.get("/health").json()
        assert health["components"]["ray"] == "error" and health["components"]["database"] == "ok"
        assert api.get("/sessions").status_code == 200
        assert api.get(f"/sessions/{sid}/status").status_code == 200
        cluster.head_node.start_gcs_server()

        # The API is still there, Ray is healthy again, and the session process never restarted.
        api.until("ray ok again", lambda: api.get("/health").json()["components"]["ray"] == "ok")
        assert api.get(f"/sessions/{sid}/status").json()["status"] == "connected"
        assert _pid(api, sid) == pid, "the session kept its process"
        second = api.post("/sessions", {"slot": 2})  # needs the registry and the GCS: both work again
        assert second.status_code == 201, second.text
        sid2 = second.json()["id"]
        api.until("new session", lambda: api.get(f"/sessions/{sid2}/status").json()["status"] == "qr_ready")

        # 2. The whole head is lost for good: what needs a session answers 503 + Retry-After, what
        # PostgreSQL knows still answers, nothing hangs, and the API stays up.
        cluster.head_node.kill_all_processes(check_alive=False, allow_graceful=False)

        def refused() -> bool:
            asked = api.post(f"/sessions/{sid}/pairing-code", {"phone": "+14155552671"})
            if asked.status_code == 503 and "Retry-After" in asked.headers:
                return True
            raise KeyError(f"{asked.status_code} {asked.text}")  # shown by `until` if it never comes

        api.until("actor routes answer 503", refused)
        # A send whose outcome cannot be known is 504 (api contract), never a 500 or a hang.
        sent = api.post(f"/sessions/{sid}/send/text", {"to": "+15550002222", "text": "hello"})
        assert sent.status_code in (503, 504), sent.text
        status = api.get(f"/sessions/{sid}/status")  # from the stored row while the actor is unreachable
        assert status.status_code == 200 and status.json()["id"] == sid
        sessions = api.get("/sessions")
        assert sessions.status_code == 200 and {s["id"] for s in sessions.json()} == {sid, sid2}
        assert api.get("/users/me").status_code == 200
        components = api.get("/health").json()["components"]
        assert (components["database"], components["redis"], components["ray"]) == ("ok", "ok", "error")
        assert api.alive()
    finally:
        interrupt(control, 30)
        assert control.stdout is not None
        control.stdout.close()  # left to the garbage collector, it warns in whichever test runs then
        interrupt(api.proc, 30)
