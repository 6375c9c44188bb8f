"""Calls from the API to named Ray actors: cached handles, lookups off the event loop, bounded waits, and
what a failure means.

A handle is only a cached address, dropped when its actor is dead or unreachable and when the driver
connects to the cluster again. What a failure means is `api.unavailable.as_wa_error`'s answer: an actor
that is missing, dead, restarting or too slow is `ActorUnreachable` (503 + Retry-After); a domain error
raised in the actor is re-raised here as itself (Ray wraps it in a `RayTaskError`).

Sends are the exception to "unreachable means retry": once a send was submitted to the actor, a
timeout or the actor dying or becoming unreachable leaves its outcome unknown (WhatsApp may have the
message), so it is `SendOutcomeUnknown` (504): the client retries with the same Idempotency-Key and
the actor answers with the first outcome instead of sending twice. A send refused before it reached
the actor (no handle, no registry, no Ray) stays 503.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from api import ray_driver
from api.metrics import Metrics
from api.unavailable import RETRY_AFTER_S, ActorUnreachable, as_wa_error, describe, ray_unavailable
from kernel.errors import SendOutcomeUnknown, WaError

log = logging.getLogger(__name__)

# Turns a streaming call's `ObjectRefGenerator` into what the caller gets, within its own bounds.
Opener = Callable[[Any], Awaitable[Any]]

LOOKUP_TIMEOUT_S = 3.0


class NamedActors:
    """Calls a method of a named actor within a timeout, through a cache of handles."""

    def __init__(self, namespace: str, metrics: Metrics, *, call_timeout_s: float) -> None:
        self._namespace = namespace
        self._metrics = metrics
        self._call_timeout_s = call_timeout_s
        self._handles: dict[str, Any] = {}
        self._generation = 0  # of `api.ray_driver`'s driver when the handles were looked up
        # Lookups ask the GCS, which can block for long when it is gone: never on the event loop, and
        # never in the default executor that the rest of the process shares.
        self._lookups = ThreadPoolExecutor(4, thread_name_prefix="ray-lookup")

    def close(self) -> None:
        self._handles.clear()
        self._lookups.shutdown(wait=False, cancel_futures=True)

    async def call(
        self,
        name: str,
        method: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        timeout_s: float | None,
        *,
        sends: bool,
        opener: Opener | None = None,
    ) -> Any:
        """`method` of the actor named `name` (its handle looked up first): its result, or what `opener`
        makes of a streaming call's refs; `sends`: its outcome is unknown once submitted (see above)."""
        handle = await self._handle(name)
        return await self._await(name, method, handle, args, kwargs, timeout_s, sends=sends, opener=opener)

    async def _handle(self, name: str) -> Any:
        refused = ray_unavailable()
        if refused is not None:
            raise refused
        driver = ray_driver.current()
        generation = driver.generation if driver is not None else 0
        if generation != self._generation:  # the driver connected again: old handles are another cluster's
            self._handles.clear()
            self._generation = generation
        handle = self._handles.get(name)
        if handle is not None:
            return handle
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
        self,
        name: str,
        method: str,
        handle: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        timeout_s: float | None,
        *,
        sends: bool,
        opener: Opener | None = None,
    ) -> Any:
        """The call's result within the timeout (or what `opener` makes of a streaming call's refs)."""
        outcome = "ok"
        submitted = False
        try:
            ref = getattr(handle, method).remote(*args, **kwargs)
            submitted = True
            if opener is not None:
                return await opener(ref)
            return await asyncio.wait_for(ref, timeout_s or self._call_timeout_s)
        except Exception as err:
            failure, outcome = self._failure(name, method, err, outcome_unknown=sends and submitted)
            if failure is err:
                raise
            # The actor's own error is re-raised as itself, without Ray's wrapper as its cause.
            raise failure from (None if failure is getattr(err, "cause", None) else err)
        finally:
            self._metrics.actor_calls.labels(method=method, outcome=outcome).inc()

    def _failure(
        self, name: str, method: str, err: Exception, *, outcome_unknown: bool
    ) -> tuple[Exception, str]:
        """What a failed call means to the client, and the outcome to count it under."""
        from ray.exceptions import RayError, RayTaskError

        if isinstance(err, RayTaskError) and isinstance(err.cause, WaError):
            return err.cause, err.cause.code  # the actor's own answer
        mapped = as_wa_error(err)
        if mapped is None:
            return err, "error"
        timed_out = isinstance(err, TimeoutError) and not isinstance(err, RayError)
        if timed_out:
            log.warning("%s.%s: no answer within the timeout", name, method)
        elif not isinstance(err, RayTaskError):
            # Dead, restarting or unreachable: forget the handle; the next call looks the name up again.
            self._handles.pop(name, None)
            log.info("%s.%s: actor unavailable (%s)", name, method, describe(err))
        outcome = "timeout" if timed_out else "unavailable"
        if outcome_unknown and not _never_ran(err):
            return SendOutcomeUnknown(), outcome
        if timed_out:
            return ActorUnreachable("The session did not answer in time", retry_after=RETRY_AFTER_S), outcome
        return mapped, outcome


def _never_ran(err: Exception) -> bool:
    """True when Ray says the task could not have started (the actor's constructor failed)."""
    from ray.exceptions import RayActorError

    return isinstance(err, RayActorError) and bool(getattr(err, "actor_init_failed", False))


def _get_actor(name: str, namespace: str) -> Any:
    import ray

    try:
        return ray.get_actor(name, namespace=namespace)
    except ValueError:  # no actor of that name (yet)
        return None
