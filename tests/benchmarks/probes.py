"""`ProbeSessionActor`: the real `SessionActor` plus a debug surface the benchmarks call.

It runs the same session code in the same kind of process (created with the registry's actor options);
the extra methods only look inside the process, or load what a live neonize session carries: with
WhatsApp unreachable, a session dials, fails within a second and recycles its process, and the fresh
process waits its backoff *before* importing neonize, so no process keeps neonize loaded by itself.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from actors.actor import SessionActor
from actors.ports import Stores
from actors.session import SessionConfig

if TYPE_CHECKING:  # the registry module pulls in SQLAlchemy and pydantic: keep them out of the worker
    from actors.registry import RegistryConfig


class ProbeSessionActor(SessionActor):
    def __init__(self, session_id: str, config: SessionConfig, stores: Stores) -> None:
        self._probe_config = config
        self._probe_client: Any = None
        super().__init__(session_id, config, stores)

    async def load_neonize(self, dial: bool = True, block: tuple[str, ...] = ()) -> dict[str, Any]:
        """Build this session's real NeonizeClient (and dial once): neonize as a live session has it.

        Only while the session core waits out its backoff (it holds no client then); the process is the
        benchmark's afterwards: the core would refuse to build a second client when the backoff ends.
        `block`: modules made unimportable first (a lever: what neonize imports but never uses here).
        """
        for name in block:
            sys.modules.setdefault(name, None)  # type: ignore[arg-type]
        from actors.clients.neonize import NeonizeClient
        from actors.ports import ClientOptions

        config = self._probe_config
        started = time.perf_counter()
        client = NeonizeClient(
            ClientOptions(
                session_id=self._session_id,
                device_jid=None,
                auth_dsn=config.auth_dsn,
                qr_first_s=config.qr_first_s,
                qr_next_s=config.qr_next_s,
                qr_codes=config.qr_codes,
            )
        )
        self._probe_client = client
        built = time.perf_counter() - started
        error = None
        if dial:
            try:
                await client.connect()
            except Exception as err:
                error = repr(err)
        return {"build_s": built, "dial_error": error, "pid": os.getpid()}

    async def modules(self) -> list[str]:
        return sorted(sys.modules)

    def environ(self) -> dict[str, str]:
        """The environment block the process started with (what the Go runtime and glibc saw)."""
        raw = Path("/proc/self/environ").read_bytes()
        items = [kv.decode(errors="replace") for kv in raw.split(b"\0") if kv]
        return dict(kv.partition("=")[::2] for kv in items)

    async def threads(self) -> int:
        return len(os.listdir("/proc/self/task"))

    async def trim(self) -> None:
        """Collect garbage and give free heap pages back to the OS (glibc malloc_trim)."""
        gc.collect()
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)


def create_probe_actor(config: RegistryConfig, session_id: str) -> Any:
    """Like `actors.registry.create_session_actor`, with the probe class."""
    import ray

    from actors.registry import session_actor_options

    remote: Any = ray.remote(ProbeSessionActor)
    return remote.options(**session_actor_options(config, session_id)).remote(
        session_id, config.session, config.stores
    )
