"""A session's files follow it: a booting process takes over what its predecessors left on other nodes.

Run once per process, after it holds the session's lease and before it opens its spool and outbox
(`actors.session_boot`). It asks the keeper (`actors.spool_keeper`) of every other live node for the
session's files, writes their entries into its own files on this node, ahead of what is there, files
ordered by when they were last written, and only then lets the keepers delete theirs. Each call is bounded
(`CALL_TIMEOUT_S`); a keeper that does not answer is skipped with a warning, and its files stay on its
node (a later start of the session takes them). A node that is gone took its files with it.

A crash between writing the entries here and the keepers' deletion hands them over again at the next
start: they are applied twice, which every spooled operation allows (`actors.spool`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from actors.fleet import nodes
from actors.ports import Stores
from actors.private_files import ensure_private_folder
from actors.spool import read_records, write_records
from actors.spool_keeper import SUFFIXES, HandedFile, SpoolKeeperActor, keeper_name

log = logging.getLogger(__name__)

CALL_TIMEOUT_S = 5.0


def ensure_keeper(folder: Path, database_dsn: str, stores: Stores) -> Any:
    """This node's keeper (created if it is missing)."""
    node_id = ray.get_runtime_context().get_node_id()
    return (
        ray.remote(SpoolKeeperActor)
        .options(
            name=keeper_name(node_id),
            get_if_exists=True,
            lifetime="detached",
            num_cpus=0,
            max_restarts=-1,
            max_task_retries=0,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
        )
        .remote(str(folder), database_dsn, stores)
    )


async def take_over(session_id: str, folder: Path) -> int:
    """Bring the session's files from the other live nodes into `folder`; how many entries came."""
    started = time.monotonic()
    own = ray.get_runtime_context().get_node_id()
    others = [node.node_id for node in nodes() if node.alive and node.node_id != own]
    asked = await asyncio.gather(*(_ask(node, session_id) for node in others))
    found = [(node, handle, files) for node, handle, files in asked if files]
    entries = 0
    if found:
        handed = [item for _, _, files in found for item in files]
        entries = merge_handed(folder, session_id, handed)
        await asyncio.gather(*(_forget(node, handle, session_id, files) for node, handle, files in found))
    if entries:
        log.info(
            "session %s: %d spooled entries taken over from %d other nodes",
            session_id,
            entries,
            len(found),
        )
    log.info(
        "session %s: spool hand-over asked %d nodes in %.0f ms",
        session_id,
        len(others),
        (time.monotonic() - started) * 1000,
    )
    return entries


async def _ask(node_id: str, session_id: str) -> tuple[str, Any, list[HandedFile]]:
    try:
        handle = ray.get_actor(keeper_name(node_id))
    except ValueError:
        return node_id, None, []  # no session process ever ran there (or Ray lost its keeper with it)
    try:
        files: list[HandedFile] = await asyncio.wait_for(handle.hand_over.remote(session_id), CALL_TIMEOUT_S)
    except Exception as err:
        log.warning(
            "session %s: the spool keeper of node %s did not answer (%s); its files stay there",
            session_id,
            node_id[:12],
            type(err).__name__,
        )
        return node_id, handle, []
    return node_id, handle, files


async def _forget(node_id: str, handle: Any, session_id: str, files: list[HandedFile]) -> None:
    try:
        await asyncio.wait_for(handle.forget.remote(session_id, files), CALL_TIMEOUT_S)
    except Exception as err:
        log.warning(
            "session %s: node %s did not delete the files handed over (%s); taken again at a later start",
            session_id,
            node_id[:12],
            type(err).__name__,
        )


def merge_handed(folder: Path, session_id: str, handed: list[HandedFile]) -> int:
    """Write each suffix's handed entries and this node's own into one file here, oldest file first."""
    ensure_private_folder(folder)
    entries = 0
    for suffix in SUFFIXES:
        mine = folder / f"{session_id}{suffix}"
        parts = [(item.mtime_ns, item.bodies) for item in handed if item.suffix == suffix and item.bodies]
        if not parts:
            continue
        entries += sum(len(bodies) for _, bodies in parts)
        if mine.exists():
            parts.append((mine.stat().st_mtime_ns, tuple(read_records(mine))))
        parts.sort(key=lambda part: part[0])
        write_records(mine, (body for _, bodies in parts for body in bodies))
    return entries
