"""What an operator sees: `GET /ops/sessions` and `whatsapp-bridge sessions`, and sessions waiting for
capacity in `/health` and `/metrics`. A local Ray with room for two sessions; three are created."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import ray

from kernel.domain import SessionStatus
from tests.apikit import Stack, api_stack
from tests.clikit import clean_env, command
from tests.raykit import eventually, insert_session, pair, pid_of, ray_init_local, wait_status

pytestmark = [pytest.mark.ray, pytest.mark.own_ray]

CAPACITY = 2


@pytest.fixture
def stack(database_url: str, redis_url: str) -> Iterator[Stack]:
    ray_init_local(wa_sessions=CAPACITY)
    try:
        # QR rounds outlast the test: an unscanned session's planned recycle would free its unit.
        with api_stack(database_url, redis_url, session={"qr_first_s": 300.0}) as running:
            yield running
    finally:
        ray.shutdown()


async def _ops_sessions(stack: Stack) -> dict[str, dict[str, Any]]:
    async with stack.client() as client:
        response = await client.get("/ops/sessions")
    assert response.status_code == 200, response.text
    body = response.json()
    return {s["sessionId"]: s for s in body["items"]} | {"nodes": body["nodes"]}


def _cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    env = clean_env(WHATSAPP_BRIDGE_URL=stack.base_url, WHATSAPP_BRIDGE_API_KEY=stack.api_key)
    return subprocess.run([*command(), *args], env=env, capture_output=True, text=True, timeout=60)


async def test_ops_sessions_lists_node_pid_status_uptime_restarts_and_memory(
    stack: Stack, database_url: str
) -> None:
    namespace = stack.namespace
    sids = [await insert_session(database_url, f"ops{i}") for i in range(CAPACITY + 1)]
    registry = ray.get_actor("session-registry", namespace=namespace)
    for sid in sids:
        await registry.ensure_session.remote(sid)
    # Two get the capacity; the third waits for a node with a free unit.
    views = await eventually(
        lambda: _ops_sessions(stack),
        lambda v: (
            sum(1 for s in sids if v[s]["state"] == "ALIVE") == CAPACITY
            and sum(1 for s in sids if v[s]["state"] == "PENDING_CREATION") == 1
        ),
        timeout=60,
    )
    running = [s for s in sids if views[s]["state"] == "ALIVE"]
    waiting = next(s for s in sids if s not in running)
    await pair(running[0], namespace, "+15551270001")
    await wait_status(running[1], namespace, SessionStatus.QR_READY)

    views = await _ops_sessions(stack)
    node_id = ray.get_runtime_context().get_node_id()
    for sid in running:
        row = views[sid]
        assert row["nodeId"] == node_id
        assert row["pid"] == await pid_of(sid, namespace)
        assert row["uptimeS"] > 0 and row["restarts"] == 0
        assert 20 * 2**20 < row["rssBytes"] < 2 * 2**30, row
    assert views[running[0]]["status"] == "connected" and views[running[1]]["status"] == "qr_ready"
    assert views[waiting]["nodeId"] is None and views[waiting]["pid"] is None
    assert views["nodes"] == [
        {
            "nodeId": node_id,
            "address": views["nodes"][0]["address"],
            "isHead": True,
            "draining": False,
            "capacity": CAPACITY,
            "sessions": CAPACITY,
        }
    ]

    # The same through the command line: a table, and the API's JSON.
    table = await asyncio.to_thread(_cli, stack, "sessions")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["SESSION", "NODE", "PID", "STATUS", "UPTIME", "RESTARTS", "RSS"]
    cells = next(line for line in lines if line.startswith(running[0])).split()
    assert cells[1:4] == [node_id[:12], str(views[running[0]]["pid"]), "connected"]
    assert cells[5] == "0" and cells[7] == "MiB"
    assert any(line.startswith(waiting) and "pending_creation" in line for line in lines), lines
    raw = await asyncio.to_thread(_cli, stack, "sessions", "--json")
    assert {s["sessionId"] for s in json.loads(raw.stdout)["items"]} == set(sids)

    # The waiting session in /health and /metrics; waiting for capacity is not a fault of the bridge.
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as client:
        health = (await client.get("/health")).json()

        async def pending_gauges() -> dict[str, float]:
            metrics = (await client.get("/metrics")).text  # refreshed in the background (api.metrics_refresh)
            return {
                line.split()[0]: float(line.split()[1])
                for line in metrics.splitlines()
                if line.startswith("wab_sessions_pending")
            }

        gauges = await eventually(
            pending_gauges,
            lambda g: g.get("wab_sessions_pending") == 1 and g["wab_sessions_pending_oldest_seconds"] > 0,
            10,
        )
    assert health["status"] == "ok" and health["pending"]["count"] == 1, health
    assert health["pending"]["oldestSeconds"] > 0, health
    assert gauges["wab_sessions_pending"] == 1 and gauges["wab_sessions_pending_oldest_seconds"] > 0

    # A crashed process is restarted by Ray: the view counts it and shows the new pid. (The waiting
    # session goes first: it would take the freed unit.)
    await registry.destroy_session.remote(waiting)
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as client:
        await eventually(lambda: client.get("/health"), lambda r: r.json()["pending"]["count"] == 0)
        await eventually(  # refreshed in the background (api.metrics_refresh)
            lambda: client.get("/metrics"), lambda r: "wab_sessions_pending 0.0" in r.text, 10
        )
    old_pid = views[running[0]]["pid"]
    os.kill(old_pid, signal.SIGKILL)
    await wait_status(running[0], namespace, SessionStatus.CONNECTED, timeout=60)
    after = (await _ops_sessions(stack))[running[0]]
    assert after["restarts"] == 1 and after["pid"] not in (None, old_pid), after
    table = await asyncio.to_thread(_cli, stack, "sessions")
    cells = next(line for line in table.stdout.splitlines() if line.startswith(running[0])).split()
    assert cells[2] == str(after["pid"]) and cells[5] == "1"


async def test_ops_routes_need_the_api_key_and_a_known_node(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as anonymous:
        for method, path in (
            ("GET", "/ops/sessions"),
            ("POST", "/ops/nodes/abcdef12/drain"),
            ("GET", "/ops/nodes/abcdef12/drain"),
            ("DELETE", "/ops/nodes/abcdef12/drain"),
            ("GET", "/ops/operations/00000000-0000-4000-8000-000000000000"),
            ("POST", "/ops/rebalance"),
            ("GET", "/ops/rebalance"),
            ("POST", "/ops/spool/replay"),
        ):
            assert (await anonymous.request(method, path)).status_code == 401, path
    async with stack.client() as client:
        missing = await client.post("/ops/nodes/abcdef1234/drain")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "node_not_found"
        bad = await client.post("/ops/nodes/not-hex!/drain")
        assert bad.status_code == 422
        for path in ("/ops/operations/00000000-0000-4000-8000-000000000000", "/ops/operations/not-an-id"):
            unknown = await client.get(path)
            assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "operation_not_found"
    result = await asyncio.to_thread(_cli, stack, "drain", "abcdef1234")
    assert result.returncode == 1 and "404" in result.stderr and stack.api_key not in result.stderr
