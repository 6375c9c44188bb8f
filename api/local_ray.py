"""A local Ray head (`ray start --head`, its own process tree) for the local run and the tests."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from api.localproc import (
    LOCALHOST,
    free_port,
    is_alive,
    log_tail,
    wait_gone,
)
from kernel.settings import Settings

log = logging.getLogger(__name__)


# Per-node environment that cuts Ray's idle CPU (notes/ray.md): no metrics, event stats, task events or
# timeline; the dashboard agent reports once a minute; a slow worker start is not fatal for its actor.
RAY_NODE_ENV: Mapping[str, str] = {
    "RAY_enable_metrics_collection": "0",
    "RAY_event_stats": "0",
    "RAY_task_events_report_interval_ms": "0",
    "RAY_enable_timeline": "0",
    "REPORTER_UPDATE_INTERVAL_MS": "60000",
    "RAY_worker_register_timeout_seconds": "60",
    "RAY_USAGE_STATS_ENABLED": "0",
    # Go reads the environment the worker process started with, not later os.environ changes: without
    # this in the node's environment, 1:1 messages carry WhatsApp's "AI" badge (neonize issue #196).
    "NEONIZE_BOT_TAG": "off",
}
RAY_OBJECT_STORE_BYTES = 200 * 1024 * 1024
_RAY_START_TIMEOUT_S = 120
# Longest temp dir that keeps `<tmp>/session_<date>_<pid>/sockets/plasma_store` under AF_UNIX's 107 bytes.
_RAY_TEMP_DIR_MAX = 36


def ray_temp_dir(data_dir: Path) -> Path:
    """Ray's temp dir (sockets, logs) for a local head kept in `data_dir`.

    `<data_dir>/tmp`, or a short dir in /tmp named after `data_dir` when that path is too long for
    the unix sockets Ray creates in it.
    """
    candidate = data_dir / "tmp"
    if len(str(candidate).encode()) <= _RAY_TEMP_DIR_MAX:
        return candidate
    return Path("/tmp") / f"wab-ray-{hashlib.sha256(str(data_dir).encode()).hexdigest()[:10]}"


def _make_ray_temp_dir(data_dir: Path) -> Path:
    path = ray_temp_dir(data_dir)
    path.mkdir(mode=0o700, exist_ok=True)
    # In /tmp anyone could have made it first: it must be ours.
    if path.stat().st_uid != os.geteuid():
        raise RuntimeError(f"{path} belongs to another user; set WHATSAPP_BRIDGE_DATA_DIR to a shorter path")
    if not path.is_relative_to(data_dir):
        log.info("Ray temp dir (logs) is %s: %s is too long for unix sockets", path, data_dir / "tmp")
    return path


def _prune_ray_sessions(temp_dir: Path, keep: int = 2) -> None:
    """Ray writes a new session folder (logs) per start; keep the last few for debugging."""
    sessions = sorted(p for p in temp_dir.glob("session_2*") if p.is_dir() and not p.is_symlink())
    for old in sessions[: max(len(sessions) - keep, 0)]:
        shutil.rmtree(old, ignore_errors=True)


def _ray_token(data_dir: Path) -> Path:
    """The cluster's auth token file (0600), generated on first use and kept for later runs."""
    path = data_dir / "auth_token"
    with contextlib.suppress(FileExistsError):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(32))
    return path


def ray_driver_env(data_dir: Path) -> dict[str, str]:
    """What a process needs in its environment, before it imports ray, to use the local head.

    - token auth with the token kept in `data_dir` (Ray 2.60 defaults to token auth);
    - a single-node host: Ray otherwise swaps 127.0.0.1 for the machine's LAN address (it reads
      this when `ray` is imported, hence "before").
    """
    data_dir = data_dir.expanduser().resolve()
    return {
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(data_dir / "auth_token"),
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    }


@dataclass(frozen=True, slots=True)
class _RayHead:
    sid: int  # session id of `ray start`: every process of the head, workers included, shares it
    address: str
    temp_dir: Path
    dashboard_port: int = 0

    def save(self, path: Path) -> None:
        path.write_text(json.dumps({**dataclasses.asdict(self), "temp_dir": str(self.temp_dir)}))

    @classmethod
    def load(cls, path: Path) -> _RayHead | None:
        try:
            raw = json.loads(path.read_text())
            return cls(
                sid=int(raw["sid"]),
                address=str(raw["address"]),
                temp_dir=Path(raw["temp_dir"]),
                dashboard_port=int(raw.get("dashboard_port", 0)),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None


def _session_processes(sid: int) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        with contextlib.suppress(OSError, psutil.Error):
            if os.getsid(proc.pid) == sid and proc.pid != os.getpid() and is_alive(proc):
                found.append(proc)
    return found


def _runs_in(procs: Sequence[psutil.Process], temp_dir: Path) -> bool:
    """Guards against a reused session id: `ray start`, gcs_server and raylet name the temp dir."""
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            if any(str(temp_dir) in arg for arg in proc.cmdline()):
                return True
    return False


def _kill_ray(sid: int) -> None:
    """`ray stop --force`, but only for this head: SIGKILL every process of its session, then check.

    `ray stop` itself would kill every Ray on the machine, other people's too. SIGTERM is no better
    here: gcs_server and raylet take 10-15 s to honour it.
    """
    left: list[psutil.Process] = []
    # A process forked during a sweep (a worker, a child of a `ray start` still starting) escapes
    # it; the next sweep finds it.
    for _ in range(3):
        found = [p for p in _session_processes(sid) if p not in left]
        if not found:
            break
        for proc in found:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.send_signal(signal.SIGKILL)
        left = wait_gone([*left, *found], 5.0)
    if left:
        log.error("Ray processes still running after stop: %s", [p.pid for p in left])


def _stop_leftover_head(data_dir: Path) -> None:
    """Stop the head a killed run recorded in `head.json`, if it still runs."""
    state = data_dir / "head.json"
    head = _RayHead.load(state)
    if head is not None and _runs_in(_session_processes(head.sid), head.temp_dir):
        log.warning("stopping a Ray head (session %s) left running by an earlier run", head.sid)
        _kill_ray(head.sid)
    state.unlink(missing_ok=True)


def _ray_start_command(settings: Settings, head: _RayHead) -> list[str]:
    ray_bin = Path(sys.executable).with_name("ray")  # the one installed with us (a venv's bin)
    resources = json.dumps({"wa_session": settings.wa_sessions_per_node})
    return [
        str(ray_bin) if ray_bin.exists() else shutil.which("ray") or "ray",
        "start",
        "--head",
        "--disable-usage-stats",
        f"--node-ip-address={LOCALHOST}",
        f"--port={head.address.rpartition(':')[2]}",
        "--include-dashboard=true",
        f"--dashboard-host={LOCALHOST}",
        f"--dashboard-port={head.dashboard_port}",
        f"--dashboard-agent-listen-port={free_port()}",
        f"--ray-client-server-port={free_port()}",
        f"--object-store-memory={RAY_OBJECT_STORE_BYTES}",
        f"--resources={resources}",
        f"--temp-dir={head.temp_dir}",
    ]


def _ray_start_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_TOKEN", "RAY_ADDRESS")}
    env.update(RAY_NODE_ENV)
    env.update(ray_driver_env(data_dir))
    # Fixed defaults (44217, 44227) would collide with any other Ray on the machine.
    env["AUTOSCALER_METRIC_PORT"] = str(free_port())
    env["DASHBOARD_METRIC_PORT"] = str(free_port())
    return env


def _spawn_ray_head(settings: Settings, data_dir: Path) -> tuple[subprocess.Popen[bytes], _RayHead]:
    temp_dir = _make_ray_temp_dir(data_dir)
    _prune_ray_sessions(temp_dir)
    planned = _RayHead(0, f"{LOCALHOST}:{free_port()}", temp_dir, dashboard_port=free_port())
    with (data_dir / "ray-start.log").open("w") as out:
        proc = subprocess.Popen(
            _ray_start_command(settings, planned),
            env=_ray_start_env(data_dir),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=data_dir,
            # Its own session: a terminal's Ctrl+C does not reach the head, and we can find (and
            # stop) exactly its processes later by session id.
            start_new_session=True,
        )
    head = dataclasses.replace(planned, sid=proc.pid)
    head.save(data_dir / "head.json")  # so that the next run can clean up if this one gets killed
    return proc, head


def _await_ray_start(proc: subprocess.Popen[bytes], log_path: Path) -> None:
    try:
        code = proc.wait(timeout=_RAY_START_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        code = None
    if code != 0:
        raise RuntimeError(f"`ray start` failed ({code}); see {log_path}:\n{log_tail(log_path)}")


@contextlib.contextmanager
def _environ(values: Mapping[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


@contextlib.contextmanager
def local_ray(settings: Settings, data_dir: Path) -> Iterator[str]:
    """A single-node Ray head (`ray start --head`, its own process tree); yields its GCS address.

    Detached actors belong to the head, not to a driver, so drivers (API processes) come and go
    freely. While the context is open, this process's environment holds `ray_driver_env(data_dir)`,
    so that `ray.init(address=...)` here connects -- if `ray` was not imported before.
    """
    data_dir = data_dir.expanduser().resolve()
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    _ray_token(data_dir)
    _stop_leftover_head(data_dir)
    started = time.monotonic()
    head: _RayHead | None = None
    try:
        with _environ(ray_driver_env(data_dir)):
            proc, head = _spawn_ray_head(settings, data_dir)
            _await_ray_start(proc, data_dir / "ray-start.log")
            elapsed = time.monotonic() - started
            log.info("local Ray head ready at %s in %.1f s", head.address, elapsed)
            log.info("Ray dashboard: http://%s:%s (token in %s)", LOCALHOST, head.dashboard_port, data_dir)
            yield head.address
    finally:
        if head is not None:  # ours, however far it got: no need to recognise it
            stopping = time.monotonic()
            _kill_ray(head.sid)
            (data_dir / "head.json").unlink(missing_ok=True)
            log.info("local Ray head stopped in %.1f s", time.monotonic() - stopping)
