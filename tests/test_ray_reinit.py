"""A fresh Ray head replaces a lost one: the API connects its driver again, without a restart.

The real `whatsapp-bridge` is the API (a Ray driver) against a `ray start --head` of this test, without
GCS fault tolerance. The head is SIGKILLed (every process of it), and a new one, with an empty GCS, is
started on the same address: the API answers 503 + Retry-After for what needs Ray meanwhile, then serves
sessions again from the new cluster (the registry recreated from PostgreSQL), with the same process.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from api.localstack import RAY_NODE_ENV, free_port, ray_driver_env
from tests.apiproc import Api, spawn
from tests.clikit import clean_env, interrupt

pytestmark = [pytest.mark.ray]

START_TIMEOUT_S = 90.0
REQUEST_BOUND_S = 15.0


@dataclass
class Head:
    """One `ray start --head` of this test: its processes share the session of the `ray start` call."""

    sid: int
    temp_dir: Path

    def processes(self) -> list[psutil.Process]:
        found = []
        for proc in psutil.process_iter():
            try:
                if os.getsid(proc.pid) == self.sid:
                    found.append(proc)
            except (OSError, psutil.Error):
                continue
        return found

    def kill(self) -> int:
        """SIGKILL every process of the head (GCS, raylet, workers, the session actors); how many."""
        procs = self.processes()
        for proc in procs:
            try:
                proc.send_signal(signal.SIGKILL)
            except psutil.Error:
                pass
        psutil.wait_procs(procs, timeout=10)
        return len(procs)

    def remove(self) -> None:
        self.kill()
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def _start_head(data_dir: Path, port: int) -> Head:
    """A fresh single-node head on `port`: its own temp dir, so nothing of an earlier head is reused."""
    temp_dir = Path(f"/tmp/h{secrets.token_hex(3)}")  # AF_UNIX paths under it must stay short
    ray_bin = Path(sys.executable).with_name("ray")
    cmd = [
        str(ray_bin) if ray_bin.exists() else shutil.which("ray") or "ray",
        "start",
        "--head",
        "--disable-usage-stats",
        "--node-ip-address=127.0.0.1",
        f"--port={port}",
        "--include-dashboard=false",
        f"--ray-client-server-port={free_port()}",
        "--num-cpus=1",
        f"--object-store-memory={80 * 1024 * 1024}",
        f"--resources={json.dumps({'wa_session': 10})}",
        f"--temp-dir={temp_dir}",
    ]
    env = {
        **clean_env(),
        **RAY_NODE_ENV,
        **ray_driver_env(data_dir),
        "AUTOSCALER_METRIC_PORT": str(free_port()),
        "DASHBOARD_METRIC_PORT": str(free_port()),
    }
    log = data_dir / "ray-start.log"
    with log.open("a") as out:
        proc = subprocess.Popen(
            cmd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    assert proc.wait(timeout=120) == 0, log.read_text()[-3000:]
    return Head(proc.pid, temp_dir)


@pytest.fixture
def ray_dir(tmp_path: Path) -> Path:
    data_dir = tmp_path / "ray"
    data_dir.mkdir()
    token = data_dir / "auth_token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    return data_dir


@pytest.fixture
def heads() -> Iterator[list[Head]]:
    started: list[Head] = []
    yield started
    for head in started:
        head.remove()


def _status(api: Api, sid: str) -> str:
    return str(api.request("GET", f"/sessions/{sid}/status").json()["status"])


def _qr(api: Api, sid: str) -> str | None:
    """The QR code a process of the session shows (a stored row alone may say qr_ready with no `qr`)."""
    body = api.request("GET", f"/sessions/{sid}/status").json()
    return body.get("qr") if body["status"] == "qr_ready" else None


def _refused(api: Api, sid: str) -> bool:
    asked = api.request("POST", f"/sessions/{sid}/pairing-code", {"phone": "+14155552671"})
    if asked.status_code == 503 and "Retry-After" in asked.headers:
        return True
    raise KeyError(f"{asked.status_code} {asked.text}")  # shown by `until` if it never comes


@pytest.mark.timeout(300)
def test_the_api_connects_again_to_a_fresh_head_on_the_same_address(
    ray_dir: Path, heads: list[Head], database_url: str, redis_url: str, tmp_path: Path
) -> None:
    port = free_port()
    heads.append(_start_head(ray_dir, port))
    api_port = free_port()
    key = secrets.token_urlsafe(24)
    env = clean_env(
        RAY_ADDRESS=f"127.0.0.1:{port}",
        RAY_NAMESPACE="reinit",
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        WHATSAPP_BRIDGE_API_KEY=key,
        WHATSAPP_BRIDGE_PORT=str(api_port),
        WA_BACKEND="simulated",
        SIM_QR_FIRST_S="30",
        SIM_QR_NEXT_S="30",
        RECONCILE_INTERVAL_S="1",
        **ray_driver_env(ray_dir),  # the cluster's token, as its drivers need it
    )
    api = spawn(tmp_path, env, api_port, key, user="reinit-user", request_bound_s=REQUEST_BOUND_S)
    try:
        api.until("healthy", lambda: api.request("GET", "/health").json()["status"] == "ok", START_TIMEOUT_S)
        created = api.request("POST", "/sessions", {"slot": 1})
        assert created.status_code == 201, created.text
        sid = created.json()["id"]
        api.until("qr", lambda: _qr(api, sid) is not None)
        lost_qr = _qr(api, sid)

        # The head is lost: every process of it SIGKILLed, GCS included, nothing kept anywhere.
        assert heads[0].kill() > 0
        api.until("actor routes answer 503", lambda: _refused(api, sid), timeout=30)
        assert api.request("GET", "/sessions").status_code == 200  # what PostgreSQL knows still answers
        assert api.request("GET", f"/sessions/{sid}/status").status_code == 200

        # A new head, with an empty GCS, on the same address.
        heads.append(_start_head(ray_dir, port))
        took = api.until(
            "ray ok again", lambda: api.request("GET", "/health").json()["components"]["ray"] == "ok", 90
        )
        # The registry exists again in the new cluster and recreated the session from its row: a new
        # process shows a code of its own (the lost process's last beat shows its code until it runs out).
        api.until("the session runs again", lambda: _qr(api, sid) not in (None, lost_qr), 60)
        scanned = api.request("POST", f"/simulator/sessions/{sid}/scan", {"phone": "+15550007777"})
        assert scanned.status_code == 200, scanned.text
        api.until("connected", lambda: _status(api, sid) == "connected")
        second = api.request("POST", "/sessions", {"slot": 2})
        assert second.status_code == 201, second.text
        sid2 = second.json()["id"]
        api.until("a new session", lambda: _status(api, sid2) == "qr_ready")
        assert api.proc.poll() is None, "the same API process throughout"
        assert "reconnecting the Ray driver" in api.log.read_text()
        print(f"ray ok {took:.1f} s after the new head was up")
    finally:
        interrupt(api.proc, 30)
