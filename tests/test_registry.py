"""The SessionRegistry on a real local Ray: reconcile, orphans, its own death, Redis outages."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import ray

from actors.calls import NetworkControls
from actors.registry import REGISTRY_NAME, create_session_actor, start_registry
from kernel.domain import SessionStatus
from tests.raykit import (
    PATIENT_QR,
    control,
    eventually,
    frames,
    handle,
    insert_session,
    pair,
    pid_of,
    registry_config,
    status_of,
    stored_messages,
    wait_status,
)

pytestmark = pytest.mark.ray


def _names(namespace: str) -> set[str]:
    return {e["name"] for e in ray.util.list_named_actors(all_namespaces=True) if e["namespace"] == namespace}


async def test_reconcile_starts_rows_and_stops_orphans(
    database_url: str, redis_url: str, namespace: str
) -> None:
    config = registry_config(database_url, redis_url, namespace, orphan_grace_s=1.0)
    orphan = "00000000-0000-4000-8000-000000000001"
    create_session_actor(config, orphan)  # an actor whose row does not exist
    rows = [await insert_session(database_url, f"u{i}") for i in range(3)]
    registry = start_registry(config)
    expected = {f"session-{sid}" for sid in rows} | {REGISTRY_NAME}
    await eventually(lambda: asyncio.sleep(0, _names(namespace)), lambda names: names == expected, timeout=30)
    placements = await registry.placements.remote()
    assert {p.session_id for p in placements} == set(rows)
    assert all(p.alive and p.pid and p.node_id for p in placements)
    # Alive first, then ready once it has loaded its row.
    await eventually(
        lambda: registry.where.remote(rows[0]),
        lambda p: p.ready and p.status in (SessionStatus.CONNECTING, SessionStatus.QR_READY),
    )


async def test_an_actor_killed_for_good_is_recreated(
    database_url: str, redis_url: str, namespace: str
) -> None:
    config = registry_config(database_url, redis_url, namespace)
    sid = await insert_session(database_url)
    start_registry(config)
    await wait_status(sid, namespace, SessionStatus.QR_READY)
    ray.kill(handle(sid, namespace), no_restart=True)  # Ray will not bring this one back
    await wait_status(sid, namespace, SessionStatus.QR_READY)


async def test_killing_the_registry_goes_unnoticed(database_url: str, redis_url: str, namespace: str) -> None:
    config = registry_config(database_url, redis_url, namespace, session=PATIENT_QR)
    sids = [await insert_session(database_url, f"u{i}") for i in range(2)]
    registry = start_registry(config)
    for i, sid in enumerate(sids):
        await pair(sid, namespace, f"+1555123010{i}")
    pids = {sid: await pid_of(sid, namespace) for sid in sids}

    ray.kill(registry, no_restart=False)  # Ray restarts it in a fresh process

    async def picture() -> list[object]:
        return list(await ray.get_actor(REGISTRY_NAME, namespace=namespace).placements.remote())

    placements = await eventually(picture, lambda ps: len(ps) == 2 and all(p.alive for p in ps), timeout=30)
    assert {p.session_id: p.pid for p in placements} == pids  # same processes: nobody restarted
    assert all(p.status == SessionStatus.CONNECTED for p in placements)  # type: ignore[attr-defined]


async def test_redis_outage_never_stops_a_session(database_url: str, namespace: str, tmp_path: Path) -> None:
    from api.localstack import embedded_valkey

    with embedded_valkey(tmp_path / "valkey") as redis_url:
        config = registry_config(database_url, redis_url, namespace)
        sid = await insert_session(database_url)
        create_session_actor(config, sid)
        await pair(sid, namespace, "+15551230201")
        actor = handle(sid, namespace)
        pid = await pid_of(sid, namespace)

    # Redis is down: the session keeps working and its state stays readable.
    during = await control(actor, NetworkControls.incoming)(
        from_="+15557770003", text="while down", push_name=None, media=None
    )
    await control(actor, NetworkControls.drop)()
    view = await wait_status(sid, namespace, SessionStatus.CONNECTED)
    assert view.phone == "+15551230201"
    page = await eventually(
        lambda: stored_messages(database_url, sid, "15557770003@s.whatsapp.net", 5), lambda p: bool(p.items)
    )
    assert [m.id for m in page.items] == [during.id]
    assert await pid_of(sid, namespace) == pid

    # Redis returns on the same port: events flow again.
    port = urlsplit(redis_url).port
    with embedded_valkey(tmp_path / "valkey", port=port) as again:
        assert again == redis_url
        async with frames(redis_url, sid) as got:
            # Sent whether or not the bus has noticed Redis is back: held in its outbox until it has.
            after = await control(actor, NetworkControls.incoming)(
                from_="+15557770003", text="back", push_name=None, media=None
            )
            await got.wait_for("msg", lambda b: b["message"]["id"] == after.id)
        assert (await status_of(sid, namespace)).status == SessionStatus.CONNECTED
