"""The bridge's errors for what `kernel.outages` calls an outage, and `describe` for log lines.

`as_wa_error(err)` answers whether an exception means "a dependency is not there right now" and, if so,
which `WaError` the client sees: `ActorUnreachable` (503 + Retry-After) when the Ray cluster or an actor
cannot be reached, `ServiceUnavailable` (503 + Retry-After) when PostgreSQL, Redis or the network refuse
or time out, or the bridge's own 503/504 error found in the chain. `None` means "not an availability
problem": the caller lets the exception go on (a constraint violation, a bug). What counts as an outage
is decided in one place, `kernel.outages`, which the session processes use too.

`ray_unavailable()` answers before any Ray call whether one may be made at all (503 while this process's
Ray driver is not connected).

`describe(err)` (from `kernel.outages`) names an exception for a log line without its text: SQLAlchemy's
text holds the SQL and its parameters, which can be secrets.
"""

from __future__ import annotations

import sys
from typing import Final

from api import ray_driver
from kernel.errors import ServiceUnavailable, SessionUnavailable, WaError
from kernel.outages import Outage, Service, Why, chain, decide
from kernel.outages import describe as describe

RETRY_AFTER_S = 2

_DATABASE_MESSAGES: Final[dict[Why, str]] = {
    Why.POOL_EXHAUSTED: "No database connection was free in time",
    Why.CONNECTION_LOST: "Lost the database connection, try again shortly",
    Why.READ_ONLY: "The database refuses writes right now (read-only), try again shortly",
}
_MESSAGES: Final[dict[Service, str]] = {
    Service.DATABASE: "The database is unavailable, try again shortly",
    Service.REDIS: "Redis is unavailable, try again shortly",
    Service.NETWORK: "A backing service did not answer, try again shortly",
}


class ActorUnreachable(SessionUnavailable):
    """The API could not reach the actor (as opposed to the actor saying it is restarting)."""


def as_wa_error(err: BaseException) -> WaError | None:
    """The bridge error that `err` means if it is an availability problem, else None."""
    for link in chain(err):
        if isinstance(link, WaError):
            return link if link.http_status in (503, 504) else None
        if isinstance(link, BaseExceptionGroup):
            mapped = [as_wa_error(inner) for inner in link.exceptions]
            first = mapped[0] if mapped else None
            return first if first is not None and all(mapped) else None
        found = decide(link)
        if isinstance(found, Outage):
            return _wa_error(found)
        if found is not None:
            return None
    return None


def ray_unavailable() -> ActorUnreachable | None:
    """Why no actor call may be made right now, or None: this process's Ray driver is not connected, or
    is being connected again after its cluster was replaced (`api.ray_driver`)."""
    driver = ray_driver.current()
    if driver is not None and not driver.connected:
        return ActorUnreachable(
            "Reconnecting to the Ray cluster, try again shortly", retry_after=RETRY_AFTER_S
        )
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return ActorUnreachable("Not connected to the Ray cluster", retry_after=RETRY_AFTER_S)
    return None


def _wa_error(found: Outage) -> WaError:
    if found.service is Service.RAY:
        return ActorUnreachable("The session's actor cannot be reached", retry_after=RETRY_AFTER_S)
    message = _MESSAGES[found.service]
    if found.service is Service.DATABASE:
        message = _DATABASE_MESSAGES.get(found.why, message)
    return ServiceUnavailable(message)
