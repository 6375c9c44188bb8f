"""Calls from the API to the session actors and the registry: cached handles, bounded waits.

The API holds no session state: a handle is only a cached address. Every call has a timeout; an actor
that is missing, dead, restarting or too slow becomes `SessionUnavailable` (503 + Retry-After), a domain
error raised in the actor is re-raised here as itself (Ray wraps it in a `RayTaskError` subclass).
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from actors.errors import ServiceUnavailable, SessionUnavailable, WaError
from actors.ids import actor_name
from api.metrics import Metrics
from api.unavailable import ActorUnreachable as ActorUnreachable

log = logging.getLogger(__name__)

CALL_TIMEOUT_S = 10.0
LOOKUP_TIMEOUT_S = 3.0
RETRY_AFTER_S = 2


class SessionActors:
    """Handles of `SessionActor`s by session id (and of the registry), with timed calls."""

    def __init__(self, namespace: str, metrics: Metrics, *, call_timeout_s: float = CALL_TIMEOUT_S) -> None:
        self._namespace = namespace
        self._metrics = metrics
        self._call_timeout_s = call_timeout_s
        self._handles: dict[str, Any] = {}
        # Lookups ask the GCS, which can block for long when it is gone: never on the event loop, and
        # never in the default executor that the rest of the process shares.
        self._lookups = ThreadPoolExecutor(4, thread_name_prefix="ray-lookup")

    def close(self) -> None:
        self._handles.clear()
        self._lookups.shutdown(wait=False, cancel_futures=True)

    async def call(self, session_id: str, method: str, *args: Any, timeout_s: float | None = None) -> Any:
        """`SessionActor.<method>(*args)` of the session, within `timeout_s`."""
        name = actor_name(session_id)
        handle = await self._handle(name)
        return await self._await(name, method, handle, args, timeout_s)

    async def registry(self, method: str, *args: Any, timeout_s: float | None = None) -> Any:
        """`SessionRegistry.<method>(*args)`; ServiceUnavailable when the registry cannot be reached."""
        from actors.registry import REGISTRY_NAME

        try:
            handle = await self._handle(REGISTRY_NAME)
            return await self._await(REGISTRY_NAME, method, handle, args, timeout_s)
        except ActorUnreachable as err:
            raise ServiceUnavailable("The session registry is unavailable, try again shortly") from err

    async def _handle(self, name: str) -> Any:
        handle = self._handles.get(name)
        if handle is not None:
            return handle
        import ray

        if not ray.is_initialized():
            raise ServiceUnavailable("Not connected to the Ray cluster")
        loop = asyncio.get_running_loop()
        lookup = loop.run_in_executor(self._lookups, _get_actor, name, self._namespace)
        try:
            handle = await asyncio.wait_for(lookup, LOOKUP_TIMEOUT_S)
        except TimeoutError as err:
            raise ActorUnreachable(
                "The Ray cluster did not answer in time", retry_after=RETRY_AFTER_S
            ) from err
        except Exception as err:
            raise ActorUnreachable("The session is not running yet", retry_after=RETRY_AFTER_S) from err
        if handle is None:
            raise ActorUnreachable("The session is not running yet", retry_after=RETRY_AFTER_S)
        self._handles[name] = handle
        return handle

    async def _await(
        self, name: str, method: str, handle: Any, args: tuple[Any, ...], timeout_s: float | None
    ) -> Any:
        from ray.exceptions import RayActorError, RayError, RayTaskError

        outcome = "ok"
        try:
            ref = getattr(handle, method).remote(*args)
            return await asyncio.wait_for(ref, timeout_s or self._call_timeout_s)
        except RayTaskError as err:
            cause = getattr(err, "cause", None)
            if isinstance(cause, WaError):
                outcome = cause.code
                raise cause from None
            if isinstance(cause, TimeoutError):
                outcome = "timeout"
                raise ActorUnreachable(
                    "The session did not finish in time", retry_after=RETRY_AFTER_S
                ) from None
            outcome = "error"
            raise
        except WaError as err:
            outcome = err.code
            raise
        except TimeoutError as err:
            outcome = "timeout"
            log.warning("%s.%s: no answer within the timeout", name, method)
            raise ActorUnreachable("The session did not answer in time", retry_after=RETRY_AFTER_S) from err
        except RayActorError as err:
            # Dead, restarting or unreachable: forget the handle; the next call looks the name up again.
            outcome = "unavailable"
            self._handles.pop(name, None)
            log.info("%s.%s: actor unavailable (%s)", name, method, type(err).__name__)
            raise ActorUnreachable(retry_after=RETRY_AFTER_S) from err
        except RayError as err:
            outcome = "unavailable"
            self._handles.pop(name, None)
            log.warning("%s.%s: Ray failed (%s)", name, method, type(err).__name__)
            raise ActorUnreachable(retry_after=RETRY_AFTER_S) from err
        finally:
            self._metrics.actor_calls.labels(method=method, outcome=outcome).inc()


def _get_actor(name: str, namespace: str) -> Any:
    import ray

    try:
        return ray.get_actor(name, namespace=namespace)
    except ValueError:  # no actor of that name (yet)
        return None
