"""A session's files on its node (spool, set-aside writes, outbox) end with the session, through the API."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.apikit import Stack, api_stack, new_user
from tests.raykit import eventually, local_ray

pytestmark = [pytest.mark.ray, pytest.mark.timeout(120)]


@dataclass
class Env:
    stack: Stack
    spool_dir: Path


@pytest.fixture(scope="module")
def env(postgres_server: str, redis_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    spool_dir = tmp_path_factory.mktemp("spools")
    with (
        local_ray(),
        api_stack(postgres_server, redis_server, session={"spool_dir": str(spool_dir)}) as stack,
    ):
        yield Env(stack, spool_dir)


def _files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


async def test_a_deleted_session_leaves_no_file_behind(env: Env) -> None:
    async with env.stack.client(new_user()) as client:
        created = [await client.post("/sessions", json={"slot": slot}) for slot in (1, 2)]
        assert [r.status_code for r in created] == [201, 201], created[0].text
        kept, gone = (r.json()["id"] for r in created)
        for sid in (kept, gone):
            await eventually(
                lambda sid=sid: client.get(f"/sessions/{sid}/status"),  # type: ignore[misc]
                lambda r: r.json()["status"] == "qr_ready",
                30,
            )
        mine = {f"{sid}.{kind}" for sid in (kept, gone) for kind in ("spool", "outbox")}
        assert _files(env.spool_dir) == mine
        # What a write PostgreSQL refused would have left (tests/test_journal_refusals.py).
        (env.spool_dir / f"{gone}.spool.failed").write_bytes(b"WABSPOOL\x01\x00")

        response = await client.delete(f"/sessions/{gone}")
        assert response.status_code == 204, response.text

        assert _files(env.spool_dir) == {f"{kept}.spool", f"{kept}.outbox"}
        assert (await client.get(f"/sessions/{kept}/status")).json()["status"] == "qr_ready"
