"""One asyncpg connection for a long-lived store in a session process: the shared reconnect mechanism.

Budget: at most one connection per object, ever. It opens on first use; a lost one is terminated before
a new one opens, and the call is retried once on the new one (at worst a statement runs twice). Calls
are serialised by a lock. asyncpg and the stdlib only: every session process imports this.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg

log = logging.getLogger(__name__)

T = TypeVar("T")

# What a connection that is gone looks like (asyncpg raises InternalClientError on a connection the
# server killed while it was idle).
LOST = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)


class DatabaseUnreachable(Exception):
    """No connection could be opened, or it was lost again right after reopening."""


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
        """Run `op(connection)`; other errors than a lost connection pass through unchanged."""
        async with self._lock:
            for attempt in (1, 2):
                conn = await self._connection()
                try:
                    return await op(conn)
                except LOST as err:
                    if isinstance(err, asyncpg.InterfaceError) and not conn.is_closed():
                        raise  # a misuse, not a lost connection
                    self._discard()
                    if attempt == 2:
                        raise DatabaseUnreachable("Lost the database connection") from err
                    log.warning("%s: lost the database connection (%r)", self._label, err)
        raise AssertionError("unreachable")

    async def close(self, timeout_s: float = 5.0) -> None:
        """Close the connection if one is open; the next call opens a new one."""
        async with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None and not conn.is_closed():
                try:
                    await asyncio.wait_for(conn.close(), timeout_s)
                except (TimeoutError, *LOST):
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
        except (TimeoutError, asyncpg.PostgresError, *LOST) as err:
            raise DatabaseUnreachable("The database is unreachable") from err
        return self._conn

    def _discard(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()
