"""Benchmark 2: capacity. The largest number of connected sessions this node holds while the API still
answers GET /health with p99 <= 100 ms and a send with p99 <= 250 ms.

    .venv/bin/python -m tests.benchmarks.bench_capacity [--steps 25,50,100,150,200,250,300] [--probe-s 30]

The service runs as in production (`whatsapp-bridge` process, registry, session actors, simulated
network). Sessions are added through the API (create + scan) up to each step; after `--settle-s`, for
`--probe-s` seconds, /health is called `--health-rate` times a second and a text is sent
`--send-rate` times a second round-robin over the sessions (both open loop, concurrently). A step passes
when both p99s are within target and nothing failed; the run stops at the first failing step (or when
less than `--min-free-gib` of memory is left; `--keep-going` probes every step). Also recorded: node
memory in use and the CPU of the session processes, of the rest of Ray, of the API, PostgreSQL and Redis
during the probe.

`--floor`: the steps count Ray's bare actors (`tests.benchmarks.bare`: no session code, idle) started
beside `--floor-sessions` connected sessions, which take the sends: what Ray's own per-process cost
leaves of the node, the limit one process per session cannot beat.

Full size: about 8 min to 250 sessions on 2 cores (it stops at the first failing step). PostgreSQL needs
max_connections >= 2 x N + 50.
Target: >= 200 sessions.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from typing import Any

import psutil

from tests.benchmarks import apistack
from tests.benchmarks import benchkit as bk
from tests.benchmarks.bench_memory import up_bare

HEALTH_P99_MS = 100.0
SEND_P99_MS = 250.0


async def probe(
    api: apistack.Api, client: Any, sids: list[str], args: argparse.Namespace, bare: Sequence[int] = ()
) -> dict[str, Any]:
    health, send = apistack.Latencies(), apistack.Latencies()

    async def health_call(_: int) -> None:
        await apistack.timed(client, "GET", "/health", health)

    async def send_call(i: int) -> None:
        k = i % len(sids)
        await apistack.timed(
            client,
            "POST",
            f"/sessions/{sids[k]}/send/text",
            send,
            json={"to": "+15551230001", "text": f"capacity {i}"},
            headers=api.headers(apistack.user_of(k)),
        )

    placements = await bk.ping_all(sids, api.namespace)
    session_pids = {p.pid for p in placements.values()}
    others = bk.ray_processes(exclude={*session_pids, *bare, api.pid})
    services = bk.service_processes()
    window = bk.CpuWindow([api.pid, *session_pids, *bare, *others, *services])
    window.start()
    wall, _ = await asyncio.gather(
        apistack.paced(args.health_rate, args.probe_s, health_call),
        apistack.paced(args.send_rate, args.probe_s, send_call),
    )
    _, shares = window.stop()
    memory = psutil.virtual_memory()
    h, s = health.summary(wall), send.summary(wall)
    ok = (
        not h["errors"]
        and not s["errors"]
        and (h["ms"]["p99"] or 0) <= HEALTH_P99_MS
        and (s["ms"]["p99"] or 0) <= SEND_P99_MS
        and len(placements) == len(sids)
    )
    return {
        "sessions": len(sids),
        "bare_actors": len(bare),
        "answering": len(placements),
        "health": h,
        "send": s,
        "passed": ok,
        "mem_used_gib": round((memory.total - memory.available) / 2**30, 2),
        "mem_free_gib": round(memory.available / 2**30, 2),
        "cpu_pct": {
            "api": 100 * shares.get(api.pid, 0.0),
            "sessions": 100 * sum(shares.get(p, 0.0) for p in session_pids),
            "bare_actors": 100 * sum(shares.get(p, 0.0) for p in bare),
            "ray_other": 100 * sum(shares.get(p, 0.0) for p in others),
            **bk.cpu_by_role(shares, services),
        },
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    services = bk.Services.from_env()
    env = bk.parse_env(args.worker_env)
    steps = bk.parse_sizes(args.steps)
    await bk.check_connection_budget(services, max(steps))
    await bk.reset(services)
    namespace = "bench-capacity"
    results: list[dict[str, Any]] = []
    capacity = max(steps) + args.floor_sessions + 5
    with bk.local_ray(capacity, namespace=namespace, dashboard=args.dashboard, worker_env=env) as node:
        with apistack.api_server(node, services) as api:
            async with api.client() as client:
                sids: list[str] = []
                bare: list[int] = []
                what = "of Ray's bare actors" if args.floor else "sessions"
                if args.floor:
                    sids = await apistack.connect_sessions(api, client, args.floor_sessions, args.timeout)
                for step in steps:
                    print(f"\n== {step} {what}", flush=True)
                    if args.floor:
                        started = await up_bare(node, step - len(bare), 2.0, args.timeout, first=len(bare))
                        bare += started.values()
                    else:
                        sids += await apistack.connect_sessions(
                            api, client, step - len(sids), args.timeout, first=len(sids)
                        )
                    await asyncio.sleep(args.settle_s)
                    result = await probe(api, client, sids, args, bare)
                    results.append(result)
                    print(
                        f"  health p99 {bk.fmt(result['health']['ms']['p99'])} ms, send p99 "
                        f"{bk.fmt(result['send']['ms']['p99'])} ms, {result['mem_free_gib']} GiB free: "
                        + ("pass" if result["passed"] else "FAIL"),
                        flush=True,
                    )
                    if result["mem_free_gib"] < args.min_free_gib:
                        break
                    if not result["passed"] and not args.keep_going:
                        break
        bk.kill_actors(namespace)
    size = "bare_actors" if args.floor else "sessions"
    passed = [r[size] for r in results if r["passed"]]
    return {"capacity": max(passed) if passed else 0, "steps": results}


def report(out: dict[str, Any]) -> None:
    bk.print_table(
        f"Capacity: {out['capacity']} (latency in ms; CPU in % of one core)",
        [
            "sessions",
            "health p50",
            "health p99",
            "send p50",
            "send p99",
            "errors",
            "mem GiB",
            "sess CPU",
            "Ray CPU",
            "API CPU",
            "PG CPU",
            "Redis CPU",
            "pass",
        ],
        [
            [
                r["bare_actors"] or r["sessions"],
                r["health"]["ms"]["p50"],
                r["health"]["ms"]["p99"],
                r["send"]["ms"]["p50"],
                r["send"]["ms"]["p99"],
                sum(r["health"]["errors"].values()) + sum(r["send"]["errors"].values()),
                r["mem_used_gib"],
                r["cpu_pct"]["sessions"] + r["cpu_pct"]["bare_actors"],
                r["cpu_pct"]["ray_other"],
                r["cpu_pct"]["api"],
                r["cpu_pct"].get("postgresql"),
                r["cpu_pct"].get("redis"),
                "yes" if r["passed"] else "no",
            ]
            for r in out["steps"]
        ],
    )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench_capacity", description=__doc__.split("\n")[0])
    p.add_argument("--steps", default="25,50,100,150,200,250,300")
    p.add_argument("--probe-s", type=float, default=30.0)
    p.add_argument("--settle-s", type=float, default=15.0)
    p.add_argument("--health-rate", type=float, default=5.0)
    p.add_argument("--send-rate", type=float, default=10.0)
    p.add_argument("--min-free-gib", type=float, default=2.0)
    p.add_argument("--keep-going", action="store_true", help="probe every step, also after one fails")
    p.add_argument(
        "--floor",
        action="store_true",
        help="steps count Ray's bare actors (no session code) beside --floor-sessions sessions",
    )
    p.add_argument("--floor-sessions", type=int, default=10)
    bk.ray_options(p, timeout_s=900.0)
    return p


def main(argv: Sequence[str] | None = None) -> None:
    bk.run_benchmark("capacity", parser().parse_args(argv), run, report)


if __name__ == "__main__":
    main()
