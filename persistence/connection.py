"""One asyncpg connection for a long-lived store in a session process: the shared reconnect mechanism.

Budget: at most one connection per object, ever. It opens on first use; a lost one is terminated before
a new one opens, and the call is retried once on the new one (at worst a statement runs twice). Calls
are serialised by a lock. What "lost" and "unreachable" mean is `kernel.outages`' answer, the same the
API uses: a connection that is closed, or an outage that asks for a new connection (lost, or read-only:
a new one may reach the new primary after a failover), is replaced; other outages (disk full, a
deadlock, a timeout...) raise `DatabaseUnreachable` on a connection that stays open; anything else (a
bug) passes through unchanged. asyncpg and the stdlib only (plus
`kernel.outages`, which imports nothing of ours): every session process imports this.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, Protocol, TypeVar

import asyncpg

from kernel.outages import Outage, Service, Why, outage

log = logging.getLogger(__name__)

T = TypeVar("T")


class Runner(Protocol):
    """Runs one operation on a session store's connection (retried once on a lost connection)."""

    async def __call__(self, op: Callable[[Any], Awaitable[T]]) -> T: ...


class DatabaseUnreachable(Exception):
    """The database is not taking this call now: no connection could be opened, it was lost again right
    after reopening, or the database refused (`outage` says why)."""

    def __init__(self, message: str, outage: Outage) -> None:
        super().__init__(message)
        self.outage = outage


class OneConnection:
    def __init__(
        self,
        dsn: str,
        *,
        application_name: str,
        label: str,
        connect_timeout: float = 10.0,
        command_timeout: float | None = None,
    ) -> None:
        self._dsn = dsn
        self._application_name = application_name[:63]
        self._label = label
        self._connect_timeout = connect_timeout
        self._command_timeout = command_timeout
        self._conn: Any = None  # asyncpg.Connection
        self._lock = asyncio.Lock()

    async def run(self, op: Callable[[Any], Awaitable[T]]) -> T:
        """Run `op(connection)`; DatabaseUnreachable for an outage, anything else unchanged."""
        async with self._lock:
            for attempt in (1, 2):
                conn = await self._connection()
                try:
                    return await op(conn)
                except Exception as err:
                    found = outage(err)
                    if not (conn.is_closed() or (found is not None and found.reconnect)):
                        if found is None:
                            raise  # a bug: not ours to retry
                        found = replace(found, service=Service.DATABASE)  # e.g. our command timeout
                        raise DatabaseUnreachable(f"The database refused ({found.why})", found) from err
                    self._discard()
                    lost = found or Outage(Service.DATABASE, Why.CONNECTION_LOST)
                    if attempt == 2:
                        raise DatabaseUnreachable(
                            f"The database did not take the call ({lost.why})", lost
                        ) from err
                    # A read-only server is retried by the journal for as long as it lasts: it logs that once.
                    level = logging.WARNING if lost.why is Why.CONNECTION_LOST else logging.DEBUG
                    log.log(
                        level,
                        "%s: new database connection (%s: %s)",
                        self._label,
                        lost.why,
                        type(err).__name__,
                    )
        raise AssertionError("unreachable")

    async def close(self, timeout_s: float = 5.0) -> None:
        """Close the connection if one is open; the next call opens a new one."""
        async with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None and not conn.is_closed():
                try:
                    await asyncio.wait_for(conn.close(), timeout_s)
                except Exception:  # timed out, or lost meanwhile: nothing to close politely
                    conn.terminate()

    async def _connection(self) -> Any:
        if self._conn is not None and not self._conn.is_closed():
            return self._conn
        self._discard()
        try:
            self._conn = await asyncpg.connect(
                self._dsn,
                timeout=self._connect_timeout,
                command_timeout=self._command_timeout,
                server_settings={"application_name": self._application_name},
            )
        except Exception as err:
            found = outage(err)
            if found is None:
                raise  # e.g. a wrong password or database name: configuration, not an outage
            raise DatabaseUnreachable(
                "The database is unreachable", replace(found, service=Service.DATABASE)
            ) from err
        return self._conn

    def _discard(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()
