"""What the registry reads and deletes, over a small SQLAlchemy pool of its own."""

from __future__ import annotations

from typing import Any

from kernel.stored import Operation, SessionToRun
from persistence import operations, repo
from persistence.db import create_engine, session_factory


class FleetStore:
    def __init__(self, database_dsn: str) -> None:
        self._engine = create_engine(database_dsn, pool_size=2, max_overflow=2, application_name="registry")
        self._db = session_factory(self._engine)

    async def sessions_to_run(self) -> list[SessionToRun]:
        async with self._db() as db:
            return await repo.sessions_to_run(db)

    async def session_owner(self, session_id: str) -> str | None:
        async with self._db() as db:
            return await repo.session_owner(db, session_id)

    async def delete_session(self, session_id: str) -> None:
        """SessionNotFound when there is no such session."""
        async with self._db() as db:
            await repo.delete_session(db, session_id)

    async def purge_old_messages(self, days: int) -> int:
        async with self._db() as db:
            return await repo.purge_old_messages(db, days)

    async def operations_in_force(self) -> list[Operation]:
        async with self._db() as db:
            return await operations.in_force(db)

    async def record_operation(
        self,
        operation_id: str,
        *,
        planned: int,
        left: int,
        moved: list[dict[str, Any]],
        waiting: list[str],
        state: str = "running",
    ) -> bool:
        """Store an operation's progress unless it was cancelled meanwhile; whether it was stored."""
        async with self._db() as db:
            return await operations.record(
                db, operation_id, planned=planned, left=left, moved=moved, waiting=waiting, state=state
            )

    async def close(self) -> None:
        await self._engine.dispose()
