"""Process-wide neonize state: the lazy import, its side effects undone, Go output routed, the one client.

Everything here exists once per OS process because neonize's Go side does: one event loop global, one
set of unlocked client maps, one stdout. Import-light: neonize is only imported by `load()`.

- `load()` sets `NEONIZE_BOT_TAG=off` first (the Go runtime copies the environment when the `.so` is
  loaded, i.e. at import), imports neonize, and undoes the import's logging side effect (root logger
  set to INFO with a StreamHandler).
- `route_go_output()` sends whatsmeow's log entries into our logging (logger `...neonize.whatsmeow`, with
  the session id) instead of neonize's own worker thread, and tags neonize's Python log lines with the
  session id. Inside a Ray actor it also calls `route_go_stdout()`.
- `route_go_stdout()` points fd 1 (where Go's `fmt.Println` writes: "Login event: ...") at a pipe read
  by a daemon thread that logs each line at DEBUG (logger `...neonize.stdout`). The pipe's write end is
  non-blocking: if the reader ever stopped, Go would lose lines rather than stall a goroutine. It is
  process-wide, so it is automatic only in a Ray actor, where fd 1 is the worker's `.out` file that
  nothing else of ours writes to (a stray `print()` there then lands in the log at DEBUG). Elsewhere
  (a terminal, `pytest -s`) it would swallow the program's own stdout, so it is left to the caller.
  fd 2 is never touched: Go's fatal errors and panics (`concurrent map writes`, SIGSEGV traces) must
  reach the worker's `.err` file, and a reader thread would die with the process before logging them.
  Go's builtin `println` ("Press Ctrl+C to exit", once per connect) therefore stays on stderr.
- `claim()` enforces one live client per process and never the same Go uuid twice: neonize keys its Go
  clients by uuid, and a second Python client with a live uuid stops the first from its finalizer.
  Every neonize client object is kept referenced until the process exits for the same reason.
"""

from __future__ import annotations

import asyncio
import ctypes
import importlib
import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from actors.clients.neonize.gocalls import GoCalls
from kernel.errors import ClientError

log = logging.getLogger(__name__)
go_log = logging.getLogger(__name__.rpartition(".")[0] + ".whatsmeow")
go_stdout = logging.getLogger(__name__.rpartition(".")[0] + ".stdout")

BOT_TAG_ENV = "NEONIZE_BOT_TAG"
# whatsmeow's level names → logging levels, and back for the level neonize passes to Go at connect.
_GO_LEVELS = {"DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARN": logging.WARNING, "ERROR": logging.ERROR}


@dataclass(frozen=True, slots=True)
class Lib:
    """The neonize modules the adapter uses (typed Any: neonize ships no type information)."""

    client: Any  # neonize.aioze.client (NewAClient)
    loop_holder: Any  # neonize.aioze.events (event_global_loop)
    events: Any  # neonize.events (event classes, EVENT_TO_INT)
    proto: Any  # neonize.proto.Neonize_pb2
    e2e: Any  # neonize.proto.waE2E.WAWebProtobufsE2E_pb2
    companion: Any  # neonize.proto.waCompanionReg.WAWebProtobufsCompanionReg_pb2 (DeviceProps)
    exc: Any  # neonize.exc
    enums: Any  # neonize.utils.enum
    logs: Any  # neonize.utils.log
    version: str
    import_s: float


# Lib field → neonize module.
_MODULES = {
    "client": "aioze.client",
    "loop_holder": "aioze.events",
    "events": "events",
    "proto": "proto.Neonize_pb2",
    "e2e": "proto.waE2E.WAWebProtobufsE2E_pb2",
    "companion": "proto.waCompanionReg.WAWebProtobufsCompanionReg_pb2",
    "exc": "exc",
    "enums": "utils.enum",
    "logs": "utils.log",
}

# What the adapter and neonize pull in but a session never runs: httpx's command-line client (rich, click,
# pygments), ~4 MB of private memory per session process (bench_levers). httpx imports fine without it.
_UNUSED_MODULES = ("httpx._main",)


def keep_unused_out() -> None:
    """Make `_UNUSED_MODULES` unimportable; before anything imports httpx (the package does it first)."""
    for name in _UNUSED_MODULES:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]


_lock = threading.Lock()
_lib: Lib | None = None
_session = "-"  # the session this process serves, for log lines written from Go's threads
_live: object | None = None
_used_uuids: set[str] = set()
_kept: list[Any] = []
_routed = False
_stdout_routed = False


def load() -> Lib:
    """Import neonize once per process, with its environment set first and its logging side effect undone."""
    global _lib
    with _lock:
        if _lib is not None:
            return _lib
        if "neonize._binder" in sys.modules and os.environ.get(BOT_TAG_ENV) != "off":
            log.error(
                "neonize was imported before %s=off was set: 1:1 messages carry the AI badge", BOT_TAG_ENV
            )
        if not _started_with(BOT_TAG_ENV, "off"):
            # Go reads the environment block the process was started with, never os.environ changes
            # (measured: GODEBUG set here is ignored). Only the node's environment reaches Go.
            log.error(
                "%s=off is not in this process's start environment: Go never sees it, and 1:1 messages"
                " carry the AI badge; set it in every Ray node's environment",
                BOT_TAG_ENV,
            )
        os.environ[BOT_TAG_ENV] = "off"
        root = logging.getLogger()
        handlers, level = list(root.handlers), root.level
        started = time.perf_counter()
        try:
            mod = {name: importlib.import_module(f"neonize.{path}") for name, path in _MODULES.items()}
        finally:
            for handler in root.handlers[:]:
                if handler not in handlers:
                    root.removeHandler(handler)
            root.setLevel(level)
        took = time.perf_counter() - started
        # We never use neonize's ffmpeg helpers (voice notes are built by actors.media): skip its warning.
        ffmpeg: Any = importlib.import_module("neonize.utils.ffmpeg")
        ffmpeg._ffmpeg_checked = True
        version = str(getattr(importlib.import_module("neonize"), "__version__", "?"))
        _lib = Lib(**mod, version=version, import_s=took)
        log.info("neonize %s loaded in %.2f s", version, took)
        return _lib


def _started_with(name: str, value: str) -> bool:
    """Whether the process's start environment (/proc/self/environ, what Go reads) has name=value."""
    try:
        with open("/proc/self/environ", "rb") as env:
            return f"{name}={value}".encode() in env.read().split(b"\0")
    except OSError:
        return True  # not Linux: cannot tell, do not cry wolf


def claim(uuid: str, owner: object, session_id: str) -> None:
    """Reserve the process's one client slot for `owner`; ClientError if taken or `uuid` was used before."""
    global _live, _session
    with _lock:
        if _live is not None:
            raise ClientError("this process already holds a WhatsApp client (neonize allows one per process)")
        if uuid in _used_uuids:
            raise ClientError("this process already used that device; start a fresh process")
        _used_uuids.add(uuid)
        _live = owner
        _session = session_id


def release(owner: object) -> None:
    global _live
    with _lock:
        if _live is owner:
            _live = None


def build_native(
    lib: Lib, dsn: str, session_id: str, device: Mapping[str, str] | None, os_name: str
) -> tuple[Any, GoCalls]:
    """neonize's client for a new device (`device` None: uuid = the session id) or for the stored device
    `device` (user, device, server), with its own bounded pool of Go calls installed."""
    route_go_output(lib)
    props = lib.companion.DeviceProps(os=os_name, platformType=lib.companion.DeviceProps.CHROME)
    if device is None:
        # Never neither jid nor new_device: whatsmeow would resume the store's first device.
        native = lib.client.NewAClient(dsn, props=props, uuid=session_id, new_device=True)
    else:
        jid = lib.proto.JID(
            User=device["user"],
            Device=int(device["device"]),
            Server=device["server"],
            RawAgent=0,
            Integrator=0,
        )
        native = lib.client.NewAClient(dsn, jid=jid, props=props)
    keep(native)
    go = GoCalls(lib.client.gocode, label=session_id)
    go.install(native)
    return native, go


def keep(native: Any) -> None:
    """Keep a neonize client referenced for the process's life: its finalizer stops the Go client by uuid."""
    _kept.append(native)


def bind_loop(lib: Lib, loop: asyncio.AbstractEventLoop) -> None:
    """Point neonize's module-global event loop at `loop` (neonize itself only sets it when unset).

    Tests that run several loops in one process get theirs bound by constructing or connecting a client
    inside the loop; `lib.loop_holder.event_global_loop = None` resets it.
    """
    lib.loop_holder.event_global_loop = loop


def go_log_level(lib: Lib) -> None:
    """Make Go filter its log entries at the level our whatsmeow logger would keep (read at connect)."""
    level = go_log.getEffectiveLevel()
    lib.logs.log.setLevel(max(logging.DEBUG, min(logging.ERROR, (level // 10) * 10)))


def route_go_output(lib: Lib) -> None:
    """Route whatsmeow's log entries and Go's stdout into our logging; once per process."""
    global _routed
    with _lock:
        if _routed:
            return
        _routed = True
    entries: queue.SimpleQueue[bytes] = queue.SimpleQueue()

    def on_entry(binary: int, size: int) -> None:
        # Called on a Go thread: copy the bytes and return at once.
        if binary and size > 0:
            entries.put(ctypes.string_at(binary, size))

    def write_entries() -> None:
        while True:
            data = entries.get()
            try:
                entry = lib.proto.LogEntry.FromString(data)
                level = _GO_LEVELS.get(entry.Level.upper(), logging.INFO)
                go_log.log(level, "session %s: [%s] %s", _session, entry.Name, entry.Message)
            except Exception:
                log.warning("session %s: unreadable whatsmeow log entry", _session, exc_info=True)

    # neonize passes the module-global `log_whatsmeow` to Go at each connect: replace it with ours.
    lib.client.log_whatsmeow = on_entry
    threading.Thread(target=write_entries, name="whatsmeow-log", daemon=True).start()
    tag = _SessionTag()
    for name in [m for m in sys.modules if m == "neonize" or m.startswith("neonize.")]:
        logging.getLogger(name).addFilter(tag)
    if _in_ray_actor():
        route_go_stdout()


class _SessionTag(logging.Filter):
    """Prefixes neonize's own log lines with the session id, like ours."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and isinstance(record.args, tuple):
            text = record.msg if record.args else record.msg.replace("%", "%%")
            record.msg, record.args = "session %s: " + text, (_session, *record.args)
        return True


def _in_ray_actor() -> bool:
    """Whether this process is a Ray actor's worker (never starts Ray: `get_runtime_context` would)."""
    ray = sys.modules.get("ray")
    try:
        return bool(ray is not None and ray.is_initialized() and ray.get_runtime_context().get_actor_id())
    except Exception:
        return False


def route_go_stdout() -> None:
    """Send fd 1 to the log (DEBUG) for the rest of the process; once. See the module docstring."""
    global _stdout_routed
    with _lock:
        if _stdout_routed:
            return
        _stdout_routed = True
    try:
        sys.stdout.flush()
        read_end, write_end = os.pipe()
        os.set_blocking(write_end, False)
        os.dup2(write_end, 1)
        os.close(write_end)
    except OSError:
        log.warning("session %s: Go's stdout stays unrouted", _session, exc_info=True)
        return
    threading.Thread(target=_read_stdout, args=(read_end,), name="go-stdout", daemon=True).start()
    log.debug("session %s: fd 1 now goes to the log (DEBUG)", _session)


def _read_stdout(fd: int) -> None:
    pending = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except InterruptedError:
            continue
        except OSError:
            return
        if not chunk:  # every writer closed fd 1 (e.g. pytest restored its own capture)
            if pending:
                go_stdout.debug("session %s: stdout: %s", _session, pending.decode(errors="replace"))
            return
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            if line.strip():
                go_stdout.debug("session %s: stdout: %s", _session, line.decode(errors="replace").rstrip())
