"""Benchmark 5: POST /sessions/{id}/send/text at 1, 10 and 100 concurrent clients across many sessions.

    .venv/bin/python -m tests.benchmarks.bench_api [--sessions 20] [--clients 1,10,100] [--duration 20]

The service runs as it does in production (`whatsapp-bridge` in its own process: one uvicorn worker, the
registry, session actors) on the simulated network. N sessions are created and paired through the API;
then for each concurrency level, after `--warmup` seconds, `--duration` seconds of closed-loop clients
(each sends, waits for the answer, sends again) spread round-robin over the sessions, from `wrk` when
it is installed (`--loadgen`; an httpx loop otherwise, which costs the shared CPU ~20x more). Measured:
throughput, p50/p90/p99 latency, errors, and the CPU each side used (API process, session processes, the
rest of Ray, PostgreSQL, Redis, the load generator: all on the same 2 cores). Each send also writes the
message to PostgreSQL, publishes it, and gets two receipts from the simulated network (more writes and
publishes).

Full size: about 1.5 min. Targets: >= 600 sends/s; p50 <= 5 ms and p99 <= 20 ms at 10 clients.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import time
from collections.abc import Sequence
from typing import Any

import httpx

from tests.benchmarks import apistack, wrk
from tests.benchmarks import benchkit as bk


async def level(
    api: apistack.Api,
    client: httpx.AsyncClient,
    sids: list[str],
    clients: int,
    seconds: float,
    loadgen: str,
    *,
    request: str = "send",
) -> dict[str, Any]:
    if loadgen == "wrk":
        return await wrk.closed_loop(api, sids, clients, seconds, request=request)
    counter = itertools.count()
    lat = apistack.Latencies()
    stop_at = time.monotonic() + seconds

    async def worker() -> None:
        while time.monotonic() < stop_at:
            i = next(counter)
            k = i % len(sids)
            sid = sids[k]
            await apistack.timed(
                client,
                "POST",
                f"/sessions/{sid}/send/text",
                lat,
                json={"to": "+15551230001", "text": f"bench {i}"},
                headers=api.headers(apistack.user_of(k)),
            )

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(clients)))
    return {**lat.summary(time.monotonic() - started), "load_generator": "httpx"}


async def measure(
    api: apistack.Api,
    client: httpx.AsyncClient,
    sids: list[str],
    clients: int,
    args: argparse.Namespace,
    *,
    request: str,
) -> dict[str, Any]:
    """One level after its warm-up, with the CPU every process on the machine spent meanwhile."""
    what = WHAT[request]
    print(f"\n== {what}, {clients} clients", flush=True)
    await level(api, client, sids, clients, args.warmup, args.loadgen, request=request)
    placements = await bk.ping_all(sids, api.namespace)
    session_pids = {p.pid for p in placements.values()}
    others = bk.ray_processes(exclude={*session_pids, api.pid})
    servers = bk.service_processes()
    window = bk.CpuWindow([api.pid, os.getpid(), *session_pids, *others, *servers])
    window.start()
    result = await level(api, client, sids, clients, args.duration, args.loadgen, request=request)
    wall_s, shares = window.stop()
    loadgen_share = shares.get(os.getpid(), 0.0) + result.pop("load_generator_cpu_s", 0.0) / wall_s
    cpu_pct = {
        "api": 100 * shares.get(api.pid, 0.0),
        "load_generator": 100 * loadgen_share,
        "sessions": 100 * sum(shares.get(p, 0.0) for p in session_pids),
        "ray_other": 100 * sum(shares.get(p, 0.0) for p in others),
        **bk.cpu_by_role(shares, servers),
    }
    per_s = result["per_s"] or float("nan")
    return {
        **result,
        "request": what,
        "clients": clients,
        "cpu_pct": cpu_pct,
        # CPU time one request costs each side (10 x % of a core / requests per second).
        "cpu_ms_per_request": {k: 10 * v / per_s for k, v in cpu_pct.items()},
        "ray_cpu_pct_by_role": bk.cpu_by_role(shares, others),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    services = bk.Services.from_env()
    env = bk.parse_env(args.worker_env)
    await bk.check_connection_budget(services, args.sessions)
    await bk.reset(services)
    namespace = "bench-api"
    results: list[dict[str, Any]] = []
    with bk.local_ray(
        args.sessions + 5, namespace=namespace, dashboard=args.dashboard, worker_env=env
    ) as node:
        with apistack.api_server(node, services) as api:
            async with api.client(connections=max(bk.parse_sizes(args.clients))) as client:
                sids = await apistack.connect_sessions(api, client, args.sessions, args.timeout)
                # The sends, then (wrk only) two floors: GET status, a PostgreSQL read that never reaches
                # Ray; typing, an actor call that does nothing.
                plan = [(clients, "send") for clients in bk.parse_sizes(args.clients)]
                if args.loadgen == "wrk":
                    plan += [(FLOOR_CLIENTS, "status"), (FLOOR_CLIENTS, "typing")]
                for clients, request in plan:
                    result = await measure(api, client, sids, clients, args, request=request)
                    results.append(result)
                    ms = result["ms"]
                    print(f"  {result['per_s']}/s, p50 {bk.fmt(ms['p50'])} ms, p99 {bk.fmt(ms['p99'])} ms")
        bk.kill_actors(namespace)
    return {"sessions": args.sessions, "load_generator": args.loadgen, "levels": results}


FLOOR_CLIENTS = 10
WHAT = {"send": "send/text", "status": "GET status", "typing": "typing (actor call)"}


def report(out: dict[str, Any]) -> None:
    bk.print_table(
        f"POST /sessions/{{id}}/send/text over {out['sessions']} sessions, load from {out['load_generator']}"
        " (GET status: a PostgreSQL read; typing: an actor call that does nothing)"
        " (ms; CPU in % of one core)",
        [
            "request",
            "clients",
            "per s",
            "p50",
            "p90",
            "p99",
            "errors",
            "API CPU",
            "sessions CPU",
            "Ray CPU",
            "PG CPU",
            "Redis CPU",
            "loadgen CPU",
        ],
        [
            [
                r.get("request", "send/text"),
                r["clients"],
                r["per_s"],
                r["ms"]["p50"],
                r["ms"]["p90"],
                r["ms"]["p99"],
                sum(r["errors"].values()),
                r["cpu_pct"]["api"],
                r["cpu_pct"]["sessions"],
                r["cpu_pct"]["ray_other"],
                r["cpu_pct"].get("postgresql"),
                r["cpu_pct"].get("redis"),
                r["cpu_pct"]["load_generator"],
            ]
            for r in out["levels"]
        ],
    )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench_api", description=__doc__.split("\n")[0])
    p.add_argument("--sessions", type=int, default=20)
    p.add_argument("--clients", default="1,10,100")
    p.add_argument("--duration", type=float, default=20.0)
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument(
        "--loadgen",
        choices=("wrk", "httpx"),
        default="wrk" if wrk.available() else "httpx",
        help="wrk when installed (apt-get install wrk): it costs the shared CPU ~20x less than httpx",
    )
    bk.ray_options(p, timeout_s=600.0)
    return p


def main(argv: Sequence[str] | None = None) -> None:
    bk.run_benchmark("api", parser().parse_args(argv), run, report)


if __name__ == "__main__":
    main()
