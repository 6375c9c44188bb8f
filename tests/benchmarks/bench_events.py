"""Benchmark 6: incoming messages → WebSocket. Messages injected at 100/s across sessions: how long until
each one's `message` frame reaches a WebSocket client.

    .venv/bin/python -m tests.benchmarks.bench_events [--sessions 20] [--rate 100] [--duration 20]

The service runs as in production (`whatsapp-bridge` process, registry, session actors, simulated network).
N sessions are created and paired through the API; one WebSocket per user (3 numbers each) stays open.
Messages arrive through POST /simulator/sessions/{id}/incoming (open loop at `--rate`/s, round-robin
over the sessions), each with a unique text. The path measured: API → session actor → simulated network
→ session stores the message (PostgreSQL) → publishes on Redis → the API's subscriber → the WebSocket.
Latency runs from the injection request's start to the frame's arrival; frames that never come count
as lost. Full size: about 1 min. Target: p99 <= 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections.abc import Sequence
from typing import Any

from tests.benchmarks import apistack
from tests.benchmarks import benchkit as bk


def _text_is(token: str) -> Any:
    def pred(frame: dict[str, Any]) -> bool:
        message = frame.get("message")
        return frame.get("type") == "message" and isinstance(message, dict) and message.get("text") == token

    return pred


async def run(args: argparse.Namespace) -> dict[str, Any]:
    services = bk.Services.from_env()
    env = bk.parse_env(args.worker_env)
    await bk.check_connection_budget(services, args.sessions)
    await bk.reset(services)
    namespace = "bench-events"
    with bk.local_ray(
        args.sessions + 5, namespace=namespace, dashboard=args.dashboard, worker_env=env
    ) as node:
        with apistack.api_server(node, services) as api:
            async with api.client() as client:
                sids = await apistack.connect_sessions(api, client, args.sessions, args.timeout)
                users = sorted({apistack.user_of(i) for i in range(len(sids))})
                async with contextlib.AsyncExitStack() as stack:
                    sockets = {u: await stack.enter_async_context(apistack.websocket(api, u)) for u in users}
                    await asyncio.sleep(1.0)  # the on-open status frames
                    lat: list[float] = []
                    lost = 0
                    inject = apistack.Latencies()

                    async def one(i: int) -> None:
                        nonlocal lost
                        k = i % len(sids)
                        token = f"bench-ev-{i}"
                        arrived = sockets[apistack.user_of(k)].expect(_text_is(token))
                        started = time.monotonic()
                        body = {"from": f"+1555{8000000 + k:07d}", "text": token, "pushName": "Bench"}
                        sent = await apistack.timed(
                            client, "POST", f"/simulator/sessions/{sids[k]}/incoming", inject, json=body
                        )
                        if not sent:
                            arrived.cancel()
                            return
                        try:
                            lat.append(await asyncio.wait_for(arrived, args.frame_timeout) - started)
                        except TimeoutError:
                            lost += 1

                    if args.warmup:
                        await apistack.paced(args.rate, args.warmup, lambda i: one(-1 - i))
                        lat.clear()
                        inject = apistack.Latencies()
                        lost = 0
                    wall = await apistack.paced(args.rate, args.duration, one)
        bk.kill_actors(namespace)
    ms = [x * 1000 for x in lat]
    return {
        "sessions": args.sessions,
        "websockets": len(users),
        "rate_per_s": args.rate,
        "delivered": len(ms),
        "lost": lost,
        "frame_ms": bk.percentiles(ms),
        "injection": inject.summary(wall),
    }


def report(out: dict[str, Any]) -> None:
    ms = out["frame_ms"]
    inj = out["injection"]["ms"]
    bk.print_table(
        f"Incoming message → WebSocket frame ({out['sessions']} sessions, {out['rate_per_s']}/s; ms)",
        ["delivered", "lost", "p50", "p90", "p99", "max", "inject p50", "inject p99", "inject errors"],
        [
            [
                out["delivered"],
                out["lost"],
                ms["p50"],
                ms["p90"],
                ms["p99"],
                ms["max"],
                inj["p50"],
                inj["p99"],
                sum(out["injection"]["errors"].values()),
            ]
        ],
    )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench_events", description=__doc__.split("\n")[0])
    p.add_argument("--sessions", type=int, default=20)
    p.add_argument("--rate", type=float, default=100.0, help="messages per second, all sessions together")
    p.add_argument("--duration", type=float, default=20.0)
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--frame-timeout", type=float, default=10.0)
    bk.ray_options(p, timeout_s=600.0)
    return p


def main(argv: Sequence[str] | None = None) -> None:
    bk.run_benchmark("events", parser().parse_args(argv), run, report)


if __name__ == "__main__":
    main()
