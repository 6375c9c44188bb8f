"""Drains and rebalances as rows (`fleet_operation`): the API creates and reads them, the registry
carries them out and records its progress (`actors.operations`).

Creating is idempotent and race-free across API processes: a second request for the same drain (or
any rebalance while one runs) gets the row in force, through the partial unique indexes.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import SQLModel

from kernel.stored import Operation
from persistence import models

OPERATION = SQLModel.metadata.tables[models.FleetOperation.__tablename__]
IN_FORCE = ("running", "done")  # a drain's node takes no new session while its drain is in one of these


def drained(found: Iterable[Operation]) -> set[str]:
    """The nodes that the drains among `found` keep empty."""
    return {op.node_id for op in found if op.kind == "drain" and op.state in IN_FORCE and op.node_id}


def _operation(row: Any) -> Operation:
    return Operation(
        id=str(row.id),
        kind=row.kind,
        node_id=row.node_id,
        state=row.state,
        forced=row.forced,
        planned=row.planned,
        left=row.left_count,
        moved=tuple(row.moved),
        waiting=tuple(row.waiting),
        created_at=row.created_at,
        updated_at=row.updated_at,
        finished_at=row.finished_at,
    )


def _uuid(operation_id: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(operation_id)
    except ValueError:
        return None


async def _start(
    db: AsyncSession, kind: str, node_id: str | None, *, forced: bool, planned: int
) -> Operation:
    """Insert the operation unless one is in force (a unique index says so); the row in force either way."""
    values = {
        "id": uuid.uuid4(),
        "kind": kind,
        "node_id": node_id,
        "state": "running",
        "forced": forced,
        "planned": planned,
        "left_count": planned,
    }
    if kind == "drain":
        target: dict[str, Any] = {
            "index_elements": ["node_id"],
            "index_where": sa.text("kind = 'drain' AND state IN ('running', 'done')"),
        }
    else:
        target = {
            "index_elements": ["kind"],
            "index_where": sa.text("kind = 'rebalance' AND state = 'running'"),
        }
    try:
        await db.execute(pg_insert(OPERATION).values(**values).on_conflict_do_nothing(**target))
        await db.commit()
    except BaseException:
        await db.rollback()
        raise
    query = sa.select(OPERATION).where(OPERATION.c.kind == kind)
    if kind == "drain":
        query = query.where(OPERATION.c.node_id == node_id, OPERATION.c.state.in_(IN_FORCE))
    else:
        query = query.where(OPERATION.c.state == "running")
    row = (await db.execute(query)).one_or_none()
    if row is None:  # finished between the insert and the read: a fresh one is what was asked for
        return await _start(db, kind, node_id, forced=forced, planned=planned)
    return _operation(row)


async def start_drain(db: AsyncSession, node_id: str, *, forced: bool, planned: int) -> Operation:
    """The node's drain: the one in force, else a new one."""
    return await _start(db, "drain", node_id, forced=forced, planned=planned)


async def start_rebalance(db: AsyncSession) -> Operation:
    """The running rebalance, else a new one (its plan is the registry's)."""
    return await _start(db, "rebalance", None, forced=False, planned=0)


async def cancel_drain(db: AsyncSession, node_id: str) -> Operation | None:
    """End the node's drain: it takes sessions again. None when no drain of it is in force."""
    try:
        row = (
            await db.execute(
                sa.update(OPERATION)
                .where(
                    OPERATION.c.kind == "drain",
                    OPERATION.c.node_id == node_id,
                    OPERATION.c.state.in_(IN_FORCE),
                )
                .values(state="cancelled", updated_at=sa.func.now(), finished_at=sa.func.now())
                .returning(OPERATION)
            )
        ).one_or_none()
        await db.commit()
    except BaseException:
        await db.rollback()
        raise
    return None if row is None else _operation(row)


async def get_operation(db: AsyncSession, operation_id: str) -> Operation | None:
    key = _uuid(operation_id)
    if key is None:
        return None
    row = (await db.execute(sa.select(OPERATION).where(OPERATION.c.id == key))).one_or_none()
    return None if row is None else _operation(row)


async def latest(db: AsyncSession, kind: str, node_id: str | None = None) -> Operation | None:
    """The newest operation of this kind (of this node, for a drain), in force or not."""
    query = sa.select(OPERATION).where(OPERATION.c.kind == kind)
    if node_id is not None:
        query = query.where(OPERATION.c.node_id == node_id)
    row = (await db.execute(query.order_by(OPERATION.c.created_at.desc()).limit(1))).one_or_none()
    return None if row is None else _operation(row)


async def in_force(db: AsyncSession) -> list[Operation]:
    """Running operations and drains in force (done ones keep their node out of placement), oldest first."""
    query = sa.select(OPERATION).where(
        sa.or_(
            OPERATION.c.state == "running",
            sa.and_(OPERATION.c.kind == "drain", OPERATION.c.state.in_(IN_FORCE)),
        )
    )
    rows = (await db.execute(query.order_by(OPERATION.c.created_at))).all()
    return [_operation(row) for row in rows]


async def record(
    db: AsyncSession,
    operation_id: str,
    *,
    planned: int,
    left: int,
    moved: list[dict[str, Any]],
    waiting: list[str],
    state: str = "running",
) -> bool:
    """Store an operation's progress (and `done`), unless it was cancelled meanwhile; whether it was."""
    values: dict[str, Any] = {
        "planned": planned,
        "left_count": left,
        "moved": moved,
        "waiting": waiting,
        "state": state,
        "updated_at": sa.func.now(),
        "finished_at": sa.func.now() if state == "done" else None,
    }
    try:
        result = await db.execute(
            sa.update(OPERATION)
            .where(OPERATION.c.id == uuid.UUID(operation_id), OPERATION.c.state.in_(IN_FORCE))
            .values(**values)
            .returning(OPERATION.c.id)
        )
        stored = result.one_or_none() is not None
        await db.commit()
    except BaseException:
        await db.rollback()
        raise
    return stored
