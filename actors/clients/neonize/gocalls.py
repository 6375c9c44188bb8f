"""Every call the session makes into neonize's Go library: on a small pool of our own, each with a bound.

neonize's async client runs each FFI function through `asyncio.to_thread`, i.e. on the loop's shared
default executor, with no time limit; a handful of uploads hung in Go would leave nothing for the
rest of the process while the actor still answers pings. `GoCalls` replaces that dispatcher on one
neonize client (`install`), so:
- a call waits at most its kind's bound (`TIMEOUTS`, by Go function name), then raises `ClientTimeout`;
- a call that times out keeps its thread until Go returns (a Go call cannot be interrupted), and keeps
  its slot: at most `slots` calls are ever in Go at once; when all are taken, a new call raises
  `ClientTimeout` at once instead of queueing behind calls that may never return;
- `Neonize` (the dial, which holds its thread for the whole session) and `Stop` (the way out, which
  must work even when every slot is hung) run on threads of their own, outside the slots and untimed:
  their callers bound them.
Threads are daemons: a call stuck in Go never holds the process at exit.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

from kernel.errors import ClientTimeout

log = logging.getLogger(__name__)

SLOTS = 8
DEFAULT_TIMEOUT_S = 30.0
# Go function → seconds a call may take. An upload moves a whole file (up to the media limit); downloads
# make no Go call (`media_fetch`).
TIMEOUTS = {
    "SendMessage": 30.0,
    "Upload": 180.0,
    "GetMe": 10.0,
    "GetProfilePicture": 15.0,
    "GetUserInfo": 15.0,
    "IsOnWhatsApp": 15.0,
    "PairPhone": 30.0,
    "MarkRead": 15.0,
    "Logout": 20.0,
}
# Calls that bypass the slots and the bound (see the module docstring).
UNBOUNDED = frozenset({"Neonize", "Stop"})

_Job = tuple[
    Callable[..., Any], tuple[Any, ...], dict[str, Any], asyncio.AbstractEventLoop, asyncio.Future[Any]
]


class GoCalls:
    """Stands in for neonize's `async_gocode`: `await calls.SendMessage(...)` runs `gocode.SendMessage`."""

    def __init__(
        self,
        gocode: Any,
        *,
        slots: int = SLOTS,
        timeouts: dict[str, float] | None = None,
        default_timeout_s: float = DEFAULT_TIMEOUT_S,
        label: str = "-",
    ) -> None:
        self._gocode = gocode
        self._slots = slots
        self._timeouts = TIMEOUTS if timeouts is None else timeouts
        self._default_timeout_s = default_timeout_s
        self._label = label
        self._lock = threading.Lock()
        self._busy = 0  # calls in Go now, including those whose caller gave up
        self._workers = 0
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()

    @property
    def busy(self) -> int:
        """Calls in Go right now (hung ones included)."""
        return self._busy

    def install(self, native: Any) -> None:
        """Route every FFI call of a neonize `NewAClient` through this pool (replaces its dispatcher)."""
        native._NewAClient__client = self

    def __getattr__(self, name: str) -> Callable[..., Any]:
        fn = getattr(self._gocode, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await self.run(name, fn, *args, **kwargs)

        return call

    async def run(self, name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """`fn(*args, **kwargs)` on a pool thread, within the bound of `name`."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if name in UNBOUNDED:
            threading.Thread(
                target=_run, args=((fn, args, kwargs, loop, future),), name=f"go-{name}", daemon=True
            ).start()
            return await future
        with self._lock:
            if self._busy >= self._slots:
                full = True
            else:
                full = False
                self._busy += 1
                if self._workers < self._busy:
                    self._workers += 1
                    threading.Thread(target=self._work, name=f"go-call-{self._workers}", daemon=True).start()
        if full:
            log.warning("session %s: %s refused: all %d Go call slots taken", self._label, name, self._slots)
            raise ClientTimeout(f"WhatsApp calls are not returning ({name} refused: no free slot)")
        self._jobs.put((fn, args, kwargs, loop, future))
        timeout = self._timeouts.get(name, self._default_timeout_s)
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            future.add_done_callback(_retrieve)
            log.warning("session %s: %s did not return within %.0f s", self._label, name, timeout)
            raise ClientTimeout(f"WhatsApp did not answer in time ({name})") from None

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                _run(job)
            finally:
                with self._lock:
                    self._busy -= 1


def _run(job: _Job) -> None:
    fn, args, kwargs, loop, future = job
    try:
        result: Any = fn(*args, **kwargs)
    except BaseException as err:  # handed to the awaiting coroutine, whatever it is
        _settle(loop, future, None, err)
    else:
        _settle(loop, future, result, None)


def _settle(
    loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], result: Any, error: BaseException | None
) -> None:
    def settle() -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    try:
        loop.call_soon_threadsafe(settle)
    except RuntimeError:
        pass  # the loop is closed: nobody is waiting any more


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
