"""Benchmark 7: first QR. POST /sessions → the first `qr` frame on the user's WebSocket, over 20 sessions.

    .venv/bin/python -m tests.benchmarks.bench_first_qr [--sessions 20] [--idle 0]

The service runs as in production (`whatsapp-bridge` process, registry, simulated network). One at a
time, a new user opens a WebSocket, creates a session, and waits for its first QR frame: the API writes
the row and asks the registry, which creates the session actor (a new Ray worker process: this dominates),
which loads its row, dials the simulated network and publishes the code through Redis to the WebSocket.
Each session is deleted again before the next one (DELETE /sessions/{id}), so every measurement starts
from the same node. `--idle N` first brings up N other connected sessions, to see the effect of a busy node.
Full size: about 1 min. Target: p50 <= 3 s.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import Sequence
from typing import Any

from tests.benchmarks import apistack
from tests.benchmarks import benchkit as bk


async def run(args: argparse.Namespace) -> dict[str, Any]:
    services = bk.Services.from_env()
    env = bk.parse_env(args.worker_env)
    await bk.check_connection_budget(services, args.idle + 2)
    await bk.reset(services)
    namespace = "bench-first-qr"
    first_qr: list[float] = []
    create_ms: list[float] = []
    missed = 0
    with bk.local_ray(args.idle + 10, namespace=namespace, dashboard=args.dashboard, worker_env=env) as node:
        with apistack.api_server(node, services) as api:
            async with api.client() as client:
                if args.idle:
                    await apistack.connect_sessions(api, client, args.idle, args.timeout)
                run_id = uuid.uuid4().hex[:6]
                for i in range(args.sessions):
                    user = f"bench-qr-{run_id}-{i}"
                    async with apistack.websocket(api, user) as ws:
                        qr = ws.expect(lambda f: f.get("type") == "qr")
                        started = time.monotonic()
                        reply = await client.post("/sessions", json={}, headers=api.headers(user))
                        create_ms.append((time.monotonic() - started) * 1000)
                        reply.raise_for_status()
                        sid = reply.json()["id"]
                        try:
                            first_qr.append(await asyncio.wait_for(qr, args.frame_timeout) - started)
                            print(f"  {i + 1}/{args.sessions}: {first_qr[-1]:.2f}s", flush=True)
                        except TimeoutError:
                            missed += 1
                            print(f"  {i + 1}/{args.sessions}: no QR within {args.frame_timeout:.0f}s")
                    deleted = await client.delete(f"/sessions/{sid}", headers=api.headers(user))
                    deleted.raise_for_status()
                    await asyncio.sleep(args.pause)
        bk.kill_actors(namespace)
    return {
        "sessions": args.sessions,
        "idle_sessions": args.idle,
        "first_qr_s": bk.percentiles(first_qr),
        "missed": missed,
        "post_sessions_ms": bk.percentiles(create_ms),
    }


def report(out: dict[str, Any]) -> None:
    qr = out["first_qr_s"]
    bk.print_table(
        f"POST /sessions → first qr frame ({out['sessions']} sessions, {out['idle_sessions']} others up)",
        ["p50 s", "p90 s", "max s", "missed", "POST p50 ms"],
        [[qr["p50"], qr["p90"], qr["max"], out["missed"], out["post_sessions_ms"]["p50"]]],
    )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench_first_qr", description=__doc__.split("\n")[0])
    p.add_argument("--sessions", type=int, default=20)
    p.add_argument("--idle", type=int, default=0, help="connected sessions running meanwhile")
    p.add_argument("--pause", type=float, default=1.0, help="seconds between sessions")
    p.add_argument("--frame-timeout", type=float, default=60.0)
    bk.ray_options(p, timeout_s=600.0)
    return p


def main(argv: Sequence[str] | None = None) -> None:
    bk.run_benchmark("first_qr", parser().parse_args(argv), run, report)


if __name__ == "__main__":
    main()
