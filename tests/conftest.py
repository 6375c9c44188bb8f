"""Shared fixtures: real PostgreSQL and Redis, started once per test session and only when a test asks.

`TEST_DATABASE_URL` / `TEST_REDIS_URL` point at running servers (CI); an unreachable one fails the
tests that need it, it never skips them. Without them, embedded PostgreSQL and Valkey are started under
a temporary folder (`api.localstack`). Migrations run once per session. Per test, `database_url` comes
with every bridge, simulator and whatsmeow table emptied, and `redis_url` with its database flushed.

Under pytest-xdist (`make test` runs two workers) worker N > 0 takes a database of its own
(`<name>_gwN`, created on the same server) and Redis database base + N, so workers never empty each
other's tables. Every run (and every worker) also has a temporary folder of its own as TMPDIR: the
spools, Ray's session folders and the embedded servers live there, so two runs on one machine never
sweep each other's spool files.
"""

from __future__ import annotations

import asyncio
import atexit
import gc
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import pytest_asyncio
import redis

from kernel.settings import asyncpg_dsn
from persistence.migrate import upgrade

T = TypeVar("T")


def _worker() -> int:
    """This xdist worker's number (0 without xdist)."""
    name = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(name.removeprefix("gw") or 0)


def _remove_run_tmp(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


# Set before anything asks tempfile for its folder (Ray workers and sessions inherit it from here);
# pytest's own tmp_path folders (screenshots kept as artifacts) stay where they were.
# xdist's workers inherit the controller's TMPDIR: each makes its folder beside it, not inside it (Ray's
# socket paths under it must stay within 107 bytes).
_TMP_ROOT = os.environ.setdefault("WAB_TEST_TMP_ROOT", tempfile.gettempdir())
os.environ.setdefault("PYTEST_DEBUG_TEMPROOT", _TMP_ROOT)
_RUN_TMP = tempfile.mkdtemp(prefix=f"wab-{os.environ.get('PYTEST_XDIST_WORKER', 'run')}-", dir=_TMP_ROOT)
os.environ["TMPDIR"] = _RUN_TMP
tempfile.tempdir = _RUN_TMP
atexit.register(_remove_run_tmp, _RUN_TMP)

CONNECT_TIMEOUT_S = 10.0
# Tables that describe the schema rather than hold test data.
_KEEP = ("alembic_version", "whatsmeow_version")
_SCHEMAS = ("public", "wa_sim", "whatsmeow")


def run_in_thread(factory: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion on a private loop, clear of pytest-asyncio's loops."""

    async def main() -> T:
        return await factory()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, main()).result()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Modules that connect this process to a Ray of their own (marker `own_ray`) run first, then the
    others, which share one local Ray (tests.raykit.local_ray) instead of each starting one. Within each,
    the longest modules first (tests/module_seconds.py), so that under xdist (`make test` passes
    --no-loadscope-reorder, which keeps this order) both workers end on short modules."""
    from tests.module_seconds import UNMEASURED_S, measured

    seconds = measured()

    def order(item: pytest.Item) -> tuple[bool, float, str]:
        name = item.path.name
        return item.get_closest_marker("own_ray") is None, -seconds.get(name, UNMEASURED_S), name

    items.sort(key=order)  # stable: a module's tests keep their order


def _release_shared_ray() -> None:
    if "tests.raykit" in sys.modules:  # a run without Ray tests never imports Ray
        sys.modules["tests.raykit"].release_shared_ray()


@pytest.fixture(scope="module", autouse=True)
def _own_ray(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("own_ray") is not None:
        _release_shared_ray()


def pytest_sessionfinish(session: pytest.Session) -> None:
    _release_shared_ray()


def pytest_collection_finish(session: pytest.Session) -> None:
    """Load neonize up front when a collected test uses it, with its import-time leak ignored.

    ResourceWarnings fail the suite (pyproject), but importing neonize leaks one it cannot avoid:
    `neonize.utils.platform` runs `os.popen("uname -a").read()` and never closes it. The child is left to
    `subprocess`'s reaper, which frees its pipe ("unclosed file") whenever the next subprocess starts,
    in whichever test that is. So the import and that reaping happen here, shielded; anything a test
    leaks still fails it.
    """
    if not any("neonize" in item.nodeid or "client_contract" in item.nodeid for item in session.items):
        return
    from actors.clients.neonize import runtime

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        runtime.load()
        deadline = time.monotonic() + 10
        while subprocess._active and time.monotonic() < deadline:  # type: ignore[attr-defined]
            subprocess._cleanup()  # type: ignore[attr-defined]  # reaps the exited children
            time.sleep(0.01)
        gc.collect()


class DeadEndProxy:
    """A local port that takes each connection and hangs up at once, counting them: where WhatsApp is."""

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self.attempts = 0
        threading.Thread(target=self._serve, name="dead-end-proxy", daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.attempts += 1
            conn.close()

    def close(self) -> None:
        self._sock.close()


@pytest.fixture(scope="module")
def no_route_to_whatsapp() -> Iterator[DeadEndProxy]:
    """No route to WhatsApp for every process started from here on (neonize children, Ray workers).

    whatsmeow dials through Go's `http.ProxyFromEnvironment`, which reads HTTPS_PROXY from the
    environment a process *starts* with (checked: the dial to web.whatsapp.com:443 arrives here as a
    CONNECT). Pointed at a port that hangs up, every dial fails at once, with or without internet, and
    `attempts` shows it was tried here. Local addresses are never proxied (NO_PROXY; Go skips them too).
    Ray workers start with their raylet's environment, so a shared Ray started before is stopped first
    and the one started under this fixture is stopped after it.
    """
    _release_shared_ray()
    proxy = DeadEndProxy()
    with pytest.MonkeyPatch.context() as patch:
        for name in ("HTTPS_PROXY", "https_proxy"):
            patch.setenv(name, proxy.url)
        for name in ("NO_PROXY", "no_proxy"):
            patch.setenv(name, "127.0.0.1,localhost")
        yield proxy
        _release_shared_ray()
    proxy.close()


@pytest.fixture(scope="session")
def _servers() -> Iterator[ExitStack]:
    """Holds the embedded servers (if any) until the session ends."""
    with ExitStack() as stack:
        yield stack


@pytest.fixture(scope="session")
def _data_dir(_servers: ExitStack) -> Path:
    # Not under pytest's tmp (mode 700): an embedded server running as its own user must reach it.
    path = Path(tempfile.mkdtemp(prefix="wab-test-"))
    path.chmod(0o755)
    _servers.callback(shutil.rmtree, path, ignore_errors=True)
    return path


async def _check_postgres(url: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(url), timeout=CONNECT_TIMEOUT_S)
    await conn.close()


@pytest.fixture(scope="session")
def postgres_server(_servers: ExitStack, _data_dir: Path) -> str:
    """The test PostgreSQL (libpq URL), migrated to head."""
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        given = url
        try:
            run_in_thread(lambda: _check_postgres(given))
        except Exception as err:
            pytest.fail(f"TEST_DATABASE_URL={url} is not reachable: {err!r}", pytrace=False)
    else:
        from api.localstack import embedded_postgres

        url = _servers.enter_context(embedded_postgres(_data_dir / "postgres"))
    url = asyncpg_dsn(url)
    if _worker():
        url = run_in_thread(lambda: _own_database(url, _worker()))
    upgrade(url)
    return url


async def _own_database(url: str, worker: int) -> str:
    """`url`'s database for xdist worker `worker`: `<name>_gw<worker>` on the same server, created once."""
    parts = urlsplit(url)
    name = f"{parts.path.lstrip('/') or 'postgres'}_gw{worker}"
    conn = await asyncpg.connect(url, timeout=CONNECT_TIMEOUT_S)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture(scope="session")
def redis_server(_servers: ExitStack, _data_dir: Path) -> str:
    """The test Redis URL."""
    url = os.environ.get("TEST_REDIS_URL")
    if url:
        try:
            with redis.Redis.from_url(url, socket_connect_timeout=CONNECT_TIMEOUT_S) as client:
                client.ping()
        except Exception as err:
            pytest.fail(f"TEST_REDIS_URL={url} is not reachable: {err!r}", pytrace=False)
        return _own_redis_db(url, _worker())
    from api.localstack import embedded_valkey

    return str(_servers.enter_context(embedded_valkey(_data_dir / "valkey")))


def _own_redis_db(url: str, worker: int) -> str:
    """`url` with its database number moved up by `worker` (xdist worker N > 0 uses base + N)."""
    if not worker:
        return url
    parts = urlsplit(url)
    base = int(parts.path.lstrip("/") or 0)
    return urlunsplit(parts._replace(path=f"/{base + worker}"))


async def _empty_tables(url: str) -> None:
    conn = await asyncpg.connect(url, timeout=CONNECT_TIMEOUT_S)
    try:
        # Bounded: a test that left a transaction open fails the next setup instead of hanging it.
        await conn.execute("SET lock_timeout = '15s'")
        tables = await conn.fetch(
            "SELECT format('%I.%I', schemaname, tablename) AS name FROM pg_tables"
            " WHERE schemaname = ANY($1::text[]) AND NOT tablename = ANY($2::text[])",
            list(_SCHEMAS),
            list(_KEEP),
        )
        if tables:
            # A session process of the previous test may still be writing (its lease row, then a message):
            # TRUNCATE can then deadlock with it and PostgreSQL cancels one of the two. Ending the
            # writers' open transactions (not the idle connections of a module's pools) lets it through.
            for attempt in range(5):
                try:
                    await conn.execute(
                        f"TRUNCATE {', '.join(t['name'] for t in tables)} RESTART IDENTITY CASCADE"
                    )
                    break
                except (asyncpg.DeadlockDetectedError, asyncpg.LockNotAvailableError):
                    if attempt == 4:
                        raise
                    await conn.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                        " AND state <> 'idle'"
                    )
                    await asyncio.sleep(0.2)
    finally:
        await conn.close()


@pytest.fixture
def database_url(postgres_server: str) -> str:
    """A libpq URL of the migrated test database, emptied for this test."""
    run_in_thread(lambda: _empty_tables(postgres_server))
    return postgres_server


@pytest.fixture
def redis_url(redis_server: str) -> str:
    """The test Redis URL, its database flushed for this test."""
    with redis.Redis.from_url(redis_server, socket_connect_timeout=CONNECT_TIMEOUT_S) as client:
        client.flushdb()
    return redis_server


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """The shared local Ray (tests.raykit.local_ray), started by the first module that asks."""
    from tests.raykit import local_ray as started

    with started():
        yield


@pytest.fixture
def namespace(local_ray: None) -> Iterator[str]:
    """A fresh Ray namespace for one test; every actor left in it is killed for good afterwards."""
    from tests.raykit import kill_namespace_actors, unique_namespace

    ns = unique_namespace()
    yield ns
    kill_namespace_actors(ns)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def chromium() -> AsyncIterator[Any]:
    """One Chromium for a console test module (tests/consolekit.py launches it)."""
    from tests.consolekit import browser

    async with browser() as launched:
        yield launched


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the console tests save their screenshots (test artifacts)."""
    from tests.consolekit import artifacts_dir

    return artifacts_dir(tmp_path_factory.getbasetemp())
