"""`whatsapp-bridge`, the one command: help, the whole local stack end to end, and /health."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

from api.app import HEALTH_TIMEOUT_S, create_app
from api.localstack import EmbeddedValkey, pg_bin, ray_temp_dir
from kernel.settings import Settings
from tests.clikit import clean_env, command, interrupt

START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0
SERVER_NAMES = ("postgres", "valkey-server", "raylet", "gcs_server")


def test_help_explains_thecommand() -> None:
    result = subprocess.run([*command(), "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0
    for variable in ("DATABASE_URL", "REDIS_URL", "RAY_ADDRESS", "WHATSAPP_BRIDGE_DATA_DIR", "WA_BACKEND"):
        assert variable in result.stdout


def test_an_unusable_redis_url_stops_the_start_without_showing_its_password() -> None:
    env = clean_env(REDIS_URL="http://:hunter2-secret@cache:6379/0")
    result = subprocess.run(command(), capture_output=True, text=True, timeout=60, check=False, env=env)
    assert result.returncode == 2
    output = result.stdout + result.stderr
    assert "REDIS_URL" in output and "scheme" in output, output
    assert "hunter2" not in output


@pytest.mark.parametrize("document", [".env.example", "README.md"])
def test_every_setting_is_documented(document: str) -> None:
    text = (Path(__file__).resolve().parents[1] / document).read_text()
    missing = [name.upper() for name in Settings.model_fields if name.upper() not in text]
    assert not missing, f"{document} does not mention {missing}"


@dataclass
class Run:
    """One `whatsapp-bridge` process of the end-to-end test."""

    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    def health(self) -> dict[str, object]:
        response = httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=5)
        assert response.status_code == 200
        body: dict[str, object] = response.json()
        return body

    def wait_healthy(self) -> dict[str, object]:
        deadline = time.monotonic() + START_TIMEOUT_S
        last: object = None
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"exited with {self.proc.returncode}:\n{self.log.read_text()}"
            try:
                last = self.health()
                if last["status"] == "ok":
                    return last
            except httpx.HTTPError as err:
                last = err
            time.sleep(0.5)
        raise AssertionError(f"not healthy after {START_TIMEOUT_S} s: {last}\n{self.log.read_text()}")

    def interrupt(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout=STOP_TIMEOUT_S)


def _start(data_dir: Path, log: Path) -> Run:
    from api.localstack import free_port

    port = free_port()
    env = clean_env(
        WHATSAPP_BRIDGE_DATA_DIR=str(data_dir), WA_BACKEND="simulated", WHATSAPP_BRIDGE_PORT=str(port)
    )
    with log.open("ab") as out:
        # cwd: a folder without a .env, so only the environment above configures the run.
        proc = subprocess.Popen(command(), env=env, cwd=data_dir.parent, stdout=out, stderr=out)
    return Run(proc, port, log)


@pytest.fixture
def runs() -> Iterator[list[Run]]:
    """Every run the test started; a failing test must not leave one behind."""
    started: list[Run] = []
    yield started
    for run in started:
        interrupt(run.proc, STOP_TIMEOUT_S)


def _stack_processes(cli: subprocess.Popen[bytes], data_dir: Path) -> list[psutil.Process]:
    """The run's own process, its children, and every server it started (they daemonize)."""
    root = psutil.Process(cli.pid)
    procs = [root, *root.children(recursive=True)]
    postmaster = psutil.Process(int((data_dir / "pg" / "postmaster.pid").read_text().split()[0]))
    valkey = psutil.Process(int((data_dir / "valkey" / "valkey.pid").read_text()))
    procs += [postmaster, *postmaster.children(recursive=True), valkey]
    ray_sid = json.loads((data_dir / "ray" / "head.json").read_text())["sid"]
    for proc in psutil.process_iter():
        try:
            if os.getsid(proc.pid) == ray_sid:
                procs.append(proc)
        except (OSError, psutil.Error):
            continue
    return procs


def _running(procs: list[psutil.Process]) -> list[str]:
    alive = []
    for proc in procs:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(f"{proc.pid} {proc.name()}")
        except psutil.NoSuchProcess:
            continue
    return alive


def _names(procs: list[psutil.Process]) -> set[str]:
    names = set()
    for proc in procs:
        try:
            names.add(proc.name())
        except psutil.NoSuchProcess:
            continue
    return names


def _add_session_row(data_dir: Path) -> None:
    """Data written while the first run is up, through the database itself."""
    port = (data_dir / "pg" / "postmaster.pid").read_text().splitlines()[3]
    url = f"postgresql://postgres@127.0.0.1:{port}/bridge"
    sql = (
        "INSERT INTO whatsapp_session (id, user_id, slot, status)"
        " VALUES (gen_random_uuid(), 'e2e-user', 1, 'disconnected')"
    )
    cmd = [pg_bin("psql"), "-X", "-v", "ON_ERROR_STOP=1", url, "-c", sql]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr


def _stop_and_check(run: Run, data_dir: Path) -> None:
    procs = _stack_processes(run.proc, data_dir)
    assert {"postgres", "valkey-server", "raylet", "gcs_server"} <= _names(procs)
    assert run.interrupt() == 0, run.log.read_text()
    deadline = time.monotonic() + 5  # killed processes may need a moment to be reaped
    while _running(procs) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _running(procs), f"left behind: {_running(procs)}"
    assert not _mentioning(data_dir), f"still running on {data_dir}: {_mentioning(data_dir)}"


def _mentioning(data_dir: Path) -> list[str]:
    """Any live process whose command line names the run's data dir (a server started from it)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmdline = " ".join(proc.info["cmdline"] or ())
        if proc.info["status"] != psutil.STATUS_ZOMBIE and str(data_dir) in cmdline:
            found.append(f"{proc.pid} {cmdline[:120]}")
    return found


@pytest.mark.ray
@pytest.mark.timeout(240)
def test_local_run_starts_everything_stops_everything_and_keeps_its_data(
    tmp_path: Path, runs: list[Run], request: pytest.FixtureRequest
) -> None:
    data_dir = tmp_path / "data"
    log = tmp_path / "bridge.log"
    # pytest's tmp path is too long for Ray's sockets: its temp dir (logs) lands in /tmp.
    ray_tmp = ray_temp_dir(data_dir.resolve() / "ray")
    request.addfinalizer(lambda: shutil.rmtree(ray_tmp, ignore_errors=True))

    first = _start(data_dir, log)
    runs.append(first)
    health = first.wait_healthy()
    assert health["components"] == {"database": "ok", "redis": "ok", "ray": "ok", "events": "ok"}
    _add_session_row(data_dir)
    assert first.health()["sessions"] == {"total": 1, "connected": 0}

    intruder = _start(data_dir, tmp_path / "intruder.log")
    runs.append(intruder)
    assert intruder.proc.wait(timeout=STOP_TIMEOUT_S) == 1
    assert "another whatsapp-bridge is running" in intruder.log.read_text()
    assert first.health()["status"] == "ok", "a second run must not disturb the first"
    _stop_and_check(first, data_dir)

    key_file = data_dir / "api_key"
    key = key_file.read_text().strip()
    assert (key_file.stat().st_mode & 0o777) == 0o600

    second = _start(data_dir, log)
    runs.append(second)
    assert second.wait_healthy()["sessions"] == {"total": 1, "connected": 0}
    if os.geteuid() == 0:
        # The server runs as its own user, which reaches its data through the o+x the run added to the
        # folders above it. Take it away, as a new pytest resetting its temporary root to 0700 does: the
        # stop still stops the server.
        tmp_path.chmod(tmp_path.stat().st_mode & ~0o001)
    _stop_and_check(second, data_dir)

    assert key_file.read_text().strip() == key, "the generated key is kept across runs"
    assert key not in log.read_text(), "the API key must never be logged"


# --- /health of the app itself ---------------------------------------------------------------------------


@pytest.fixture
def valkey(tmp_path: Path) -> Iterator[EmbeddedValkey]:
    with EmbeddedValkey(tmp_path / "valkey") as server:
        yield server


async def test_health_reports_redis_down_quickly_and_recovers(
    database_url: str, valkey: EmbeddedValkey
) -> None:
    settings = Settings(
        database_url=database_url, redis_url=valkey.url, whatsapp_bridge_api_key="k", _env_file=None
    )
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    client = httpx.AsyncClient(transport=transport, base_url="http://bridge")
    async with app.router.lifespan_context(app), client:
        body = (await client.get("/health")).json()
        assert body["components"]["database"] == "ok"
        assert body["components"]["redis"] == "ok"
        assert body["sessions"] == {"total": 0, "connected": 0}

        valkey.stop()
        started = time.monotonic()
        body = (await client.get("/health")).json()
        assert time.monotonic() - started < HEALTH_TIMEOUT_S + 1.5
        assert body["status"] == "degraded"
        assert body["components"]["redis"] == "error"
        assert body["components"]["database"] == "ok"

        valkey.start()
        assert (await client.get("/health")).json()["components"]["redis"] == "ok"


async def test_health_answers_in_time_when_services_hang() -> None:
    """A listener that never answers (a hung server, a firewall dropping packets) must not hang /health."""
    with socket.socket() as hole:
        hole.bind(("127.0.0.1", 0))
        hole.listen(64)  # the kernel completes handshakes; nobody ever reads or writes
        port = hole.getsockname()[1]
        settings = Settings(
            database_url=f"postgresql://postgres@127.0.0.1:{port}/bridge",
            redis_url=f"redis://127.0.0.1:{port}/0",
            whatsapp_bridge_api_key="k",
            _env_file=None,
        )
        app = create_app(settings)
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bridge")
        async with app.router.lifespan_context(app), client:
            started = time.monotonic()
            response = await client.get("/health")
            elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert elapsed < HEALTH_TIMEOUT_S + 1.5
    body = response.json()
    assert body["status"] == "degraded"
    assert body["sessions"] == {"total": 0, "connected": 0}
    assert (body["components"]["database"], body["components"]["redis"]) == ("error", "error")
