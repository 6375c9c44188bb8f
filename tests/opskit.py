"""Drains and rebalances as an operator asks for them without the API: a row the registry carries out."""

from __future__ import annotations

from collections.abc import Callable

from kernel.stored import Operation
from persistence import operations
from persistence.db import create_engine, session_factory
from tests.raykit import eventually


async def _run(database_url: str, query: Callable[..., object], *args: object, **kwargs: object) -> object:
    engine = create_engine(database_url, pool_size=1, max_overflow=0)
    try:
        async with session_factory(engine)() as db:
            return await query(db, *args, **kwargs)  # type: ignore[misc]
    finally:
        await engine.dispose()


async def request_drain(database_url: str, node_id: str, *, planned: int = 0) -> Operation:
    op = await _run(database_url, operations.start_drain, node_id, forced=False, planned=planned)
    assert isinstance(op, Operation)
    return op


async def request_rebalance(database_url: str) -> Operation:
    op = await _run(database_url, operations.start_rebalance)
    assert isinstance(op, Operation)
    return op


async def operation(database_url: str, operation_id: str) -> Operation | None:
    op = await _run(database_url, operations.get_operation, operation_id)
    assert op is None or isinstance(op, Operation)
    return op


async def wait_operation(
    database_url: str, operation_id: str, ok: Callable[[Operation], bool], timeout: float = 180.0
) -> Operation:
    """The operation's row once `ok(row)` holds."""
    found = await eventually(
        lambda: operation(database_url, operation_id),
        lambda op: op is not None and ok(op),
        timeout,
        every=0.5,
    )
    assert found is not None
    return found
