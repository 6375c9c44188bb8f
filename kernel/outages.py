"""What "unavailable" means, once for the whole bridge: is a failure an outage (retry later) or a bug?

`outage(err)` answers for an exception and the causes it wraps: an `Outage` when a backing service said
"not now" (retry it: the same call can succeed later, unchanged), None when it is anything else (a bug,
bad data: retrying the same call would fail the same way). The API turns an outage into 503 + Retry-After
(`api.unavailable`); a session's journal keeps the write at the head of its spool and retries it
(`actors.journal`); a session's connection is replaced when the outage says it is gone
(`persistence.connection`).

PostgreSQL errors are decided by SQLSTATE alone (`sqlstate_outage`); the table below decides every class
(the unit test walks them all):

| SQLSTATE | outage | why |
|---|---|---|
| class 08 | connection lost | the connection failed or was refused |
| 57P01, 57P02, 57P05, 25P03, 25P04 | connection lost | the server ended it (shutdown, idle timeouts) |
| 57P03, 53300 | cannot connect | starting up / shutting down, too many connections |
| 25006 | read-only | a standby, or a primary being demoted during a failover |
| class 53 (but 53300) | no resources | disk full (53100), out of memory, too many locks, ... |
| 40001, 40P01 | conflict | serialization failure, deadlock: the transaction was rolled back |
| 55P03 | conflict | lock_timeout: another transaction holds the lock |
| 40003 | connection lost | the commit's outcome is unknown: the connection went away |
| 57014 | timeout | statement_timeout, or an operator's pg_cancel_backend: like our own client-side timeout |
| anything else | none: a bug | constraints (23), data (22), syntax/undefined (42), permissions, ... |

Every write a session retries is idempotent (`actors.writes`), so retrying a timeout or a commit of
unknown outcome is safe. A statement that always exceeds its timeout would be retried forever; that is
the same for our client-side timeout, and it shows as a backlog that never drains (`/health`).

Beyond PostgreSQL: asyncpg's client-side losses (`InternalClientError`), OS-level network errors and
timeouts, redis-py's connection errors, and Ray's "actor cannot be reached" errors are outages; a Ray
task error is decided by the error the actor raised. SQLAlchemy's pool timeout and invalidated
connections are outages. The libraries other than asyncpg are looked up in `sys.modules`: a process that
never imported one cannot have raised its errors, and a session process does not pay for importing them.

This module imports nothing of the bridge's own.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Literal

import asyncpg


class Service(StrEnum):
    DATABASE = "database"
    REDIS = "redis"
    RAY = "ray"
    NETWORK = "network"  # an OS-level error or timeout: some backing service did not answer


class Why(StrEnum):
    CONNECTION_LOST = "connection_lost"
    CANNOT_CONNECT = "cannot_connect"
    READ_ONLY = "read_only"
    NO_RESOURCES = "no_resources"
    CONFLICT = "conflict"
    TIMEOUT = "timeout"
    POOL_EXHAUSTED = "pool_exhausted"
    UNREACHABLE = "unreachable"


# The database answers but will not take writes: what `/health` reports as "refused".
REFUSES_WRITES: Final = frozenset({Why.READ_ONLY, Why.NO_RESOURCES})


def refusals(reported: Iterable[str], read_only: bool) -> list[str]:
    """Why the database refuses writes: what sessions' journals reported, and read-only if a probe saw it."""
    return sorted(set(reported) | ({Why.READ_ONLY.value} if read_only else set()))


@dataclass(frozen=True, slots=True)
class Outage:
    service: Service
    why: Why
    sqlstate: str | None = None

    @property
    def reconnect(self) -> bool:
        """Open a new connection before trying again: this one is gone, or its server takes no writes (a
        primary demoted in a failover stays a standby; a new connection may reach the new primary)."""
        return self.why in (Why.CONNECTION_LOST, Why.READ_ONLY)

    @property
    def refuses_writes(self) -> bool:
        return self.service is Service.DATABASE and self.why in REFUSES_WRITES


_BY_CODE: Final[dict[str, Why]] = {
    "57P01": Why.CONNECTION_LOST,  # admin_shutdown (also pg_terminate_backend)
    "57P02": Why.CONNECTION_LOST,  # crash_shutdown
    "57P05": Why.CONNECTION_LOST,  # idle_session_timeout
    "25P03": Why.CONNECTION_LOST,  # idle_in_transaction_session_timeout
    "25P04": Why.CONNECTION_LOST,  # transaction_timeout
    "40003": Why.CONNECTION_LOST,  # statement_completion_unknown
    "57P03": Why.CANNOT_CONNECT,  # cannot_connect_now
    "53300": Why.CANNOT_CONNECT,  # too_many_connections
    "25006": Why.READ_ONLY,  # read_only_sql_transaction
    "40001": Why.CONFLICT,  # serialization_failure
    "40P01": Why.CONFLICT,  # deadlock_detected
    "55P03": Why.CONFLICT,  # lock_not_available
    "57014": Why.TIMEOUT,  # query_canceled
}
_BY_CLASS: Final[dict[str, Why]] = {
    "08": Why.CONNECTION_LOST,  # connection_exception
    "53": Why.NO_RESOURCES,  # insufficient_resources: disk_full, out_of_memory, ...
}

# OSErrors about local files, not about a service that did not answer.
_LOCAL_OS_ERRORS: Final = (
    FileNotFoundError,
    FileExistsError,
    PermissionError,
    IsADirectoryError,
    NotADirectoryError,
)

# How many links of a cause chain are followed; chains are short, cycles are possible.
_MAX_DEPTH: Final = 8

_BUG: Final = "bug"
Decision = Outage | Literal["bug"] | None


def sqlstate_outage(sqlstate: str) -> Outage | None:
    """The outage a PostgreSQL SQLSTATE means, or None: a bug (see the table in the docstring)."""
    why = _BY_CODE.get(sqlstate) or _BY_CLASS.get(sqlstate[:2])
    return None if why is None else Outage(Service.DATABASE, why, sqlstate)


def outage(err: BaseException) -> Outage | None:
    """The outage `err` (or the first link of its cause chain that decides) means, or None."""
    for link in chain(err):
        found = decide(link)
        if found == _BUG:
            return None
        if isinstance(found, Outage):
            return found
    return None


def decide(err: BaseException) -> Decision:
    """One link: an Outage, "bug" (decided: not an outage), or None (its cause decides)."""
    carried = getattr(err, "outage", None)  # an error of ours that was decided where it was raised
    if isinstance(carried, Outage):
        return carried
    ray_errors = sys.modules.get("ray.exceptions")
    if ray_errors is not None and isinstance(err, ray_errors.RayError):
        if isinstance(err, ray_errors.RayTaskError):
            return None  # an actor method raised: its cause decides
        return Outage(Service.RAY, Why.UNREACHABLE)
    sa = sys.modules.get("sqlalchemy.exc")
    if sa is not None:
        if isinstance(err, sa.TimeoutError):
            return Outage(Service.DATABASE, Why.POOL_EXHAUSTED)
        if isinstance(err, sa.DBAPIError):
            if err.connection_invalidated:
                return Outage(Service.DATABASE, Why.CONNECTION_LOST, sqlstate(err))
            code = sqlstate(err)
            if code is not None:
                return sqlstate_outage(code) or _BUG
            if isinstance(err, (sa.OperationalError, sa.InterfaceError)):
                return Outage(Service.DATABASE, Why.CONNECTION_LOST)
            return None  # the driver's error (`orig`) decides
    if isinstance(err, asyncpg.InternalClientError):  # the protocol lost track: the connection is unusable
        return Outage(Service.DATABASE, Why.CONNECTION_LOST)
    code = sqlstate(err)
    if code is not None:
        return sqlstate_outage(code) or _BUG
    if isinstance(err, asyncpg.InterfaceError):
        return _BUG  # a misuse of a connection (one that is closed is the caller's to see)
    redis_errors = sys.modules.get("redis.exceptions")
    if redis_errors is not None and isinstance(err, _redis_unavailable(redis_errors)):
        return Outage(Service.REDIS, Why.UNREACHABLE)
    if isinstance(err, TimeoutError):
        return Outage(Service.NETWORK, Why.TIMEOUT)
    if isinstance(err, OSError) and not isinstance(err, _LOCAL_OS_ERRORS):
        return Outage(Service.NETWORK, Why.UNREACHABLE)
    return None


def describe(err: BaseException) -> str:
    """The exception's class (and SQLSTATE, and the classes it wraps) for a log line: never its text,
    which can hold SQL parameters (secrets) or a message's content."""
    names = []
    for link in chain(err):
        code = sqlstate(link)
        names.append(f"{type(link).__name__}[{code}]" if code else type(link).__name__)
    return " <- ".join(dict.fromkeys(names))


def sqlstate(err: BaseException) -> str | None:
    """The SQLSTATE of a PostgreSQL error (asyncpg's, or the one SQLAlchemy wraps), else None."""
    orig = getattr(err, "orig", None)
    if isinstance(orig, BaseException) and not isinstance(getattr(err, "sqlstate", None), str):
        err = orig
    code = getattr(err, "sqlstate", None)
    return code if isinstance(code, str) and len(code) == 5 else None


def chain(err: BaseException) -> Iterator[BaseException]:
    """`err`, then what it wraps: SQLAlchemy's `orig`, a Ray task's `cause`, then `__cause__`."""
    seen: set[int] = set()
    link: BaseException | None = err
    while link is not None and id(link) not in seen and len(seen) < _MAX_DEPTH:
        seen.add(id(link))
        yield link
        wrapped = getattr(link, "orig", None)
        if not isinstance(wrapped, BaseException):
            wrapped = getattr(link, "cause", None)
        link = wrapped if isinstance(wrapped, BaseException) else link.__cause__


def _redis_unavailable(errors: object) -> tuple[type[BaseException], ...]:
    """redis-py: refused, dropped, timed out, loading its data set, failing over, a replica promoted."""
    names = ("ConnectionError", "TimeoutError", "ClusterDownError", "TryAgainError", "ReadOnlyError")
    return tuple(getattr(errors, name) for name in names)
