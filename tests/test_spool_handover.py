"""A session's files follow it to its next node (actors.spool_keeper, actors.spool_handover), without Ray:
two folders stand for two nodes' disks. The two-node run with PostgreSQL cut is tests/test_spool_move.py.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from actors.spool import Codec, Spool
from actors.spool_handover import merge_handed
from actors.spool_keeper import SpoolKeeper
from kernel.ids import new_session_id
from kernel.settings import asyncpg_dsn
from persistence.stores import PostgresStores
from tests.raykit import insert_session

TEXT = Codec(lambda entry: json.dumps(entry).encode(), lambda body: json.loads(body))


def _spool(folder: Path, sid: str, suffix: str = ".spool") -> Spool:
    return Spool(folder / f"{sid}{suffix}", codec=TEXT, max_bytes=1 << 20)


def _planted(folder: Path, sid: str, entries: list[str], suffix: str = ".spool") -> None:
    """What a process that is gone left: entries never applied, the file no longer open."""
    spool = _spool(folder, sid, suffix)
    for entry in entries:
        spool.append(entry)
    spool.close()


def _entries(folder: Path, sid: str, suffix: str = ".spool") -> list[str]:
    spool = _spool(folder, sid, suffix)
    try:
        return [entry for _, entry in spool.head(1000)]
    finally:
        spool.close()


def _keeper(folder: Path) -> SpoolKeeper:
    return SpoolKeeper(str(folder), "postgresql://unused", PostgresStores())


async def test_a_gone_process_spool_is_adopted_in_order_ahead_of_newer_entries_and_then_deleted(
    tmp_path: Path,
) -> None:
    node_a, node_b = tmp_path / "a", tmp_path / "b"
    sid = new_session_id()
    _planted(node_a, sid, [f"on A {i}" for i in range(5)])
    _planted(node_a, sid, ["frame on A"], suffix=".outbox")
    old = time.time() - 60
    for name in (f"{sid}.spool", f"{sid}.outbox"):
        os.utime(node_a / name, (old, old))  # written before anything on B
    _planted(node_b, sid, ["on B 0"])  # a later process on B that could not apply it either
    keeper = _keeper(node_a)

    handed = await keeper.hand_over(sid)
    assert merge_handed(node_b, sid, handed) == 6
    assert await keeper.forget(sid, handed) == 2

    assert _entries(node_b, sid) == [*(f"on A {i}" for i in range(5)), "on B 0"]
    assert _entries(node_b, sid, ".outbox") == ["frame on A"]
    assert sorted(p.name for p in node_a.iterdir()) == []  # nothing left on A to apply twice


async def test_files_held_by_a_live_process_are_not_taken(tmp_path: Path) -> None:
    node_a = tmp_path / "a"
    sid = new_session_id()
    live = _spool(node_a, sid)  # a process on A still has it open
    try:
        live.append("still A's")
        keeper = _keeper(node_a)
        assert await keeper.hand_over(sid) == []
        assert await keeper.forget(sid, []) == 0
    finally:
        live.close()
    assert _entries(node_a, sid) == ["still A's"]


async def test_a_file_that_changed_after_the_hand_over_is_not_deleted(tmp_path: Path) -> None:
    node_a = tmp_path / "a"
    sid = new_session_id()
    _planted(node_a, sid, ["first"])
    keeper = _keeper(node_a)
    handed = await keeper.hand_over(sid)
    _planted(node_a, sid, ["second"])  # appended after it was read: never lost
    assert await keeper.forget(sid, handed) == 0
    assert _entries(node_a, sid) == ["first", "second"]


async def test_the_sweep_deletes_files_of_deleted_sessions_only(tmp_path: Path, database_url: str) -> None:
    node = tmp_path / "node"
    kept = await insert_session(database_url)
    gone, live = new_session_id(), new_session_id()
    for sid in (kept, gone, live):
        _planted(node, sid, ["entry"])
    _planted(node, gone, ["frame"], suffix=".outbox")
    held = _spool(node, live)  # a process runs it: its row may just not be visible yet
    try:
        keeper = SpoolKeeper(str(node), asyncpg_dsn(database_url), PostgresStores())
        assert await keeper.sweep() == 1
    finally:
        held.close()
    assert sorted(p.name for p in node.iterdir()) == sorted([f"{kept}.spool", f"{live}.spool"])


async def test_a_keeper_is_idle_only_without_a_live_process_or_a_record_to_hand_over(tmp_path: Path) -> None:
    node = tmp_path / "a"
    keeper = _keeper(node)
    assert await keeper.idle(), "an empty node: nothing keeps the keeper (nor, through it, the node)"
    gone_empty = new_session_id()
    _planted(node, gone_empty, [])  # what a killed process leaves with nothing pending
    assert await keeper.idle()
    live = _spool(node, new_session_id())
    try:
        assert not await keeper.idle(), "a session process runs here"
    finally:
        live.close()
    assert await keeper.idle()
    _planted(node, new_session_id(), ["a message PostgreSQL never took"])
    assert not await keeper.idle(), "a record waits for the session's next process"
