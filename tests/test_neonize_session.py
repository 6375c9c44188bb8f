"""A real neonize session in a Ray actor with WhatsApp unreachable: it reports it and retries, boundedly."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from actors.registry import create_session_actor
from kernel.domain import Reason, SessionStatus
from kernel.proxy import ProxySettings
from kernel.settings import asyncpg_dsn
from persistence.migrate import auth_dsn
from tests.conftest import DeadEndProxy
from tests.proxykit import closed_port
from tests.raykit import (
    eventually,
    insert_session,
    pid_of,
    registry_config,
    status_of,
)

# Before the module's Ray starts: its workers must start with no route to WhatsApp.
pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("no_route_to_whatsapp")]


async def _failures(database_url: str, sid: str) -> int:
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        return int(
            await conn.fetchval("SELECT connect_failures FROM whatsapp_session WHERE id=$1::uuid", sid)
        )
    finally:
        await conn.close()


def neonize_config(database_url: str, redis_url: str, namespace: str) -> Any:
    """Sessions on real neonize, retrying fast (0.5 s backoff base)."""
    return registry_config(
        database_url,
        redis_url,
        namespace,
        session={"backend": "neonize", "auth_dsn": auth_dsn(database_url), "backoff_base_s": 0.5},
    )


async def test_unreachable_whatsapp_is_network_and_retried_in_fresh_processes(
    database_url: str, redis_url: str, namespace: str, no_route_to_whatsapp: DeadEndProxy
) -> None:
    config = neonize_config(database_url, redis_url, namespace)
    sid = await insert_session(database_url)
    create_session_actor(config, sid)
    view = await eventually(
        lambda: status_of(sid, namespace), lambda v: v.status == SessionStatus.DISCONNECTED, timeout=60
    )
    assert view.reason == Reason.NETWORK
    # Each retry is a fresh process (no connect() loop in one: neonize leaks a DB pool per connect).
    pids: set[int] = set()

    async def watch() -> int:
        pids.add(await pid_of(sid, namespace))
        return len(pids)

    await eventually(watch, lambda n: n >= 3, timeout=60, every=0.1)
    assert await _failures(database_url, sid) >= 2
    assert no_route_to_whatsapp.attempts >= 3, "every dial went to the dead end, not to WhatsApp"
    view = await status_of(sid, namespace)
    assert view.status in (SessionStatus.DISCONNECTED, SessionStatus.CONNECTING)
    assert view.reason == Reason.NETWORK or view.status == SessionStatus.CONNECTING
    assert view.qr is None


async def test_a_dead_proxy_is_the_sessions_reason_and_stays_while_it_retries(
    database_url: str, redis_url: str, namespace: str, no_route_to_whatsapp: DeadEndProxy
) -> None:
    config = neonize_config(database_url, redis_url, namespace)
    sid = await insert_session(database_url)
    dead = ProxySettings("socks5", "127.0.0.1", closed_port(), "neo", "pw-neonize-session")
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        await conn.execute("UPDATE whatsapp_session SET proxy_url = $2 WHERE id = $1::uuid", sid, dead.public)
        await conn.execute(
            "INSERT INTO session_proxy_secret (session_id, password) VALUES ($1::uuid, $2)",
            sid,
            dead.password,
        )
    finally:
        await conn.close()
    attempts_before = no_route_to_whatsapp.attempts
    create_session_actor(config, sid)
    await eventually(
        lambda: status_of(sid, namespace), lambda v: v.reason == Reason.PROXY_UNREACHABLE, timeout=60
    )
    # Fresh processes dial again (with the backoff), and each says the proxy is the problem meanwhile.
    pids: set[int] = set()
    reasons: set[Reason | None] = set()

    async def watch() -> int:
        pids.add(await pid_of(sid, namespace))
        reasons.add((await status_of(sid, namespace)).reason)
        return len(pids)

    await eventually(watch, lambda n: n >= 3, timeout=60, every=0.1)
    assert reasons == {Reason.PROXY_UNREACHABLE}
    assert no_route_to_whatsapp.attempts == attempts_before, "no dial went around the number's proxy"
