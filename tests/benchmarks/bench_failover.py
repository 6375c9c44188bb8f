"""Benchmark 4: failover. A 3-node ray.cluster_utils.Cluster on this machine, sessions spread over all
three; the worker node holding about a third of them is killed: how long until each is `connected` again.

    .venv/bin/python -m tests.benchmarks.bench_failover [--sessions 30] [--rounds 1]

N paired sessions on the simulated network (the real SessionRegistry places them with SPREAD and the
`wa_session` resource, `--per-node` each), then `remove_node(allow_graceful=False)` on the worker node
with the count nearest N/3: its raylet and every session process on it die at once. Node death is
detected by Ray's own GCS health checks, as every deployment uses them (3 s period, 10 s timeout, 5
misses: a faster setting declared a CPU-throttled node dead); Ray restarts each lost actor
on a surviving node and the session resumes from PostgreSQL with its stored device, no scan. Measured from
the kill: when the GCS marks the node dead, and when each moved session publishes `connected` (p50, max).
Sessions on the other nodes must not restart. Target: every moved session connected within 15 s.

Full size: about 30 s per round on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import ray

from actors.registry import RegistryConfig, start_registry
from persistence.stores import PostgresStores
from tests.benchmarks import benchkit as bk


async def _node_dead_after(node_id: str, t0: float, timeout: float) -> float | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = {n["NodeID"]: n["Alive"] for n in await asyncio.to_thread(ray.nodes)}
        if not alive.get(node_id, False):
            return time.monotonic() - t0
        await asyncio.sleep(0.1)
    return None


async def run_round(args: argparse.Namespace, services: bk.Services, round_no: int) -> dict[str, Any]:
    n = args.sessions
    namespace = f"bench-failover-{round_no}"
    await bk.reset(services)
    sids = await bk.insert_sessions(services, n)
    config = RegistryConfig(
        services.database_url, namespace, bk.session_config(services), args.rate, stores=PostgresStores()
    )
    with bk.local_cluster(
        args.per_node, 3, namespace=namespace, worker_env=bk.parse_env(args.worker_env)
    ) as cluster:
        async with bk.StatusWatch(services.redis_url, set(sids)) as watch:
            start_registry(config)
            ok, pair_s = await bk.pair_all(watch, sids, namespace, args.timeout)
            if not ok:
                raise RuntimeError(f"only {watch.count('connected', sids)} of {n} sessions paired")
            before = await bk.ping_all(sids, namespace)
            per_node = Counter(p.node_id for p in before.values())
            workers = cluster.nodes[1:]
            victim = min(workers, key=lambda w: abs(per_node.get(w.node_id, 0) - n / 3))
            moved = [sid for sid, p in before.items() if p.node_id == victim.node_id]
            print(
                f"  {n} paired in {pair_s:.0f}s; per node {sorted(per_node.values())}; killing {len(moved)}"
            )
            for sid in moved:  # the next `connected` frame of each is its failover
                watch.status.pop(sid, None)
                watch.first.pop((sid, "connected"), None)
            t0 = time.monotonic()
            cluster.cluster.remove_node(victim, allow_graceful=False)
            dead_after = asyncio.create_task(_node_dead_after(victim.node_id, t0, 60))
            ok = await watch.wait(
                lambda: all((sid, "connected") in watch.first for sid in moved),
                args.timeout,
                progress=lambda: f"{sum((s, 'connected') in watch.first for s in moved)}/{len(moved)} back",
                poll=lambda: bk.poll_into(watch, moved, namespace, "connected"),
                poll_every=5.0,
            )
            back = [
                watch.first[(sid, "connected")] - t0 for sid in moved if (sid, "connected") in watch.first
            ]
            detected = await dead_after
            after = await bk.ping_all(sids, namespace)
        bk.kill_actors(namespace)
    survivors = [sid for sid in sids if sid not in moved]
    return {
        "round": round_no,
        "sessions": n,
        "per_node": sorted(per_node.values()),
        "moved": len(moved),
        "all_back": ok,
        "node_dead_after_s": round(detected, 2) if detected is not None else None,
        "connected_after_s": bk.percentiles(back),
        "moved_to": sorted(Counter(after[s].node_id[:8] for s in moved if s in after).values()),
        "others_restarted": sum(1 for s in survivors if s in after and after[s].pid != before[s].pid),
    }


def report(results: list[dict[str, Any]]) -> None:
    bk.print_table(
        "Failover: worker node killed (seconds from the kill)",
        ["round", "N", "per node", "moved", "node dead", "p50 back", "all back", "others restarted"],
        [
            [
                r["round"],
                r["sessions"],
                "/".join(map(str, r["per_node"])),
                r["moved"],
                r["node_dead_after_s"],
                r["connected_after_s"]["p50"],
                r["connected_after_s"]["max"] if r["all_back"] else "timeout",
                r["others_restarted"],
            ]
            for r in results
        ],
    )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench_failover", description=__doc__.split("\n")[0])
    p.add_argument("--sessions", type=int, default=30)
    p.add_argument("--per-node", type=int, default=100, help="wa_session capacity of each node")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--rate", type=float, default=2.0)
    p.add_argument("--timeout", type=float, default=300.0)
    p.add_argument("--worker-env", action="append", default=[], help="KEY=VALUE for Ray's processes")
    return p


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    services = bk.Services.from_env()
    await bk.check_connection_budget(services, args.sessions)
    results = []
    for i in range(1, args.rounds + 1):
        print(f"\n== round {i}", flush=True)
        results.append(await run_round(args, services, i))
    return results


def main(argv: Sequence[str] | None = None) -> None:
    bk.run_benchmark("failover", parser().parse_args(argv), run, report)


if __name__ == "__main__":
    main()
