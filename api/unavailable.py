"""One meaning of "unavailable": what Ray, asyncpg, SQLAlchemy and redis-py raise, as the bridge's errors.

`as_wa_error(err)` answers whether an exception means "a dependency is not there right now" and, if so,
which `WaError` the client sees: `ActorUnreachable` (503 + Retry-After) when the Ray cluster or an actor
cannot be reached, `ServiceUnavailable` (503 + Retry-After) when PostgreSQL, Redis or the network refuse
or time out, or the bridge's own 503/504 error found in the chain. `None` means "not an availability
problem": the caller lets the exception go on (a constraint violation, a bug).

`ray_unavailable()` answers before any Ray call whether one may be made at all (503 while this process's
Ray driver is not connected).

`describe(err)` names an exception for a log line without its text: SQLAlchemy's text holds the SQL and
its parameters, which can be secrets.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Literal

import redis.exceptions as redis_errors
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from actors.errors import ServiceUnavailable, SessionUnavailable, WaError
from api import ray_driver

RETRY_AFTER_S = 2

# PostgreSQL SQLSTATEs that mean "not now": connection exceptions (08), insufficient resources (53,
# e.g. 53300 too_many_connections), and operator intervention: admin/crash shutdown, cannot connect now.
_UNAVAILABLE_SQLSTATE_CLASSES = ("08", "53")
_UNAVAILABLE_SQLSTATES = frozenset({"57P01", "57P02", "57P03"})

# redis-py: refused, dropped, timed out, loading its data set, failing over, or a replica being promoted.
_REDIS_UNAVAILABLE = (
    redis_errors.ConnectionError,  # includes BusyLoadingError, MaxConnectionsError
    redis_errors.TimeoutError,
    redis_errors.ClusterDownError,
    redis_errors.TryAgainError,
    redis_errors.ReadOnlyError,
)

# How many links of a cause chain are followed; chains are short, cycles are possible.
_MAX_DEPTH = 8


class ActorUnreachable(SessionUnavailable):
    """The API could not reach the actor (as opposed to the actor saying it is restarting)."""


def as_wa_error(err: BaseException) -> WaError | None:
    """The bridge error that `err` means if it is an availability problem, else None."""
    for link in _chain(err):
        found = _classify(link)
        if found is False:
            return None
        if found is not None:
            return found
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


def is_unavailable_sqlstate(sqlstate: str | None) -> bool:
    if not sqlstate:
        return False
    return sqlstate[:2] in _UNAVAILABLE_SQLSTATE_CLASSES or sqlstate in _UNAVAILABLE_SQLSTATES


def describe(err: BaseException) -> str:
    """The exception's class (and SQLSTATE, and the class it wraps): never its message."""
    names = []
    for link in _chain(err):
        name = type(link).__name__
        sqlstate = _sqlstate(link)
        names.append(f"{name}[{sqlstate}]" if sqlstate else name)
    return " <- ".join(dict.fromkeys(names))


def _classify(err: BaseException) -> WaError | Literal[False] | None:
    """A WaError if this link decides "unavailable", False if it decides "not unavailable", None to go on."""
    ray_errors = sys.modules.get("ray.exceptions")  # only a process that imported Ray can see its errors
    if ray_errors is not None and isinstance(err, ray_errors.RayError):
        if isinstance(err, ray_errors.RayTaskError):
            return None  # an actor method raised: its cause decides
        return ActorUnreachable("The session's actor cannot be reached", retry_after=RETRY_AFTER_S)
    if isinstance(err, WaError):
        return err if err.http_status in (503, 504) else False
    if isinstance(err, BaseExceptionGroup):
        mapped = [as_wa_error(inner) for inner in err.exceptions]
        first = mapped[0] if mapped else None
        return first if first is not None and all(mapped) else False
    if isinstance(err, PoolTimeout):
        return _database("No database connection was free in time")
    if isinstance(err, DBAPIError):
        if err.connection_invalidated:
            return _database("Lost the database connection, try again shortly")
        if is_unavailable_sqlstate(_sqlstate(err)) or isinstance(err, (OperationalError, InterfaceError)):
            return _database()
        return None  # the driver's error (`orig`) decides
    sqlstate = _sqlstate(err)
    if sqlstate is not None:
        return _database() if is_unavailable_sqlstate(sqlstate) else False
    if isinstance(err, _REDIS_UNAVAILABLE):
        return ServiceUnavailable("Redis is unavailable, try again shortly")
    if isinstance(err, (OSError, TimeoutError)):
        return ServiceUnavailable("A backing service did not answer, try again shortly")
    return None


def _database(message: str = "The database is unavailable, try again shortly") -> ServiceUnavailable:
    return ServiceUnavailable(message)


def _sqlstate(err: BaseException) -> str | None:
    if isinstance(err, DBAPIError):
        err = err.orig if isinstance(err.orig, BaseException) else err
    sqlstate = getattr(err, "sqlstate", None)
    return sqlstate if isinstance(sqlstate, str) else None


def _chain(err: BaseException) -> Iterator[BaseException]:
    """`err`, then what it wraps: SQLAlchemy's `orig`, a Ray task's `cause`, then `__cause__`."""
    seen: set[int] = set()
    link: BaseException | None = err
    while link is not None and id(link) not in seen and len(seen) < _MAX_DEPTH:
        seen.add(id(link))
        yield link
        wrapped = getattr(link, "orig", None) if isinstance(link, DBAPIError) else None
        if wrapped is None:
            wrapped = getattr(link, "cause", None)
        link = wrapped if isinstance(wrapped, BaseException) else link.__cause__
