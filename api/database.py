"""Bounded database calls for the API: each query runs in its own session, within a timeout.

A database that is down or hung becomes `ServiceUnavailable` (503), never a hang or a 500.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Concatenate, ParamSpec, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.unavailable import as_wa_error

P = ParamSpec("P")
T = TypeVar("T")

QUERY_TIMEOUT_S = 10.0


class Database:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], timeout_s: float = QUERY_TIMEOUT_S
    ) -> None:
        self._sessions = sessions
        self._timeout_s = timeout_s

    async def run(
        self, query: Callable[Concatenate[AsyncSession, P], Awaitable[T]], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """`query(db, *args, **kwargs)` in a fresh session; ServiceUnavailable if the database fails us."""
        try:
            async with asyncio.timeout(self._timeout_s), self._sessions() as db:
                return await query(db, *args, **kwargs)
        except Exception as err:
            mapped = as_wa_error(err)
            if mapped is None or mapped is err:
                raise
            raise mapped from err
