"""Benchmark 8: drain and autoscale. How long a node of N sessions takes to drain, and how long sessions
that wait for capacity take to connect once the autoscaler adds nodes.

    .venv/bin/python -m tests.benchmarks.bench_drain [--sessions 50] [--rate 2] [--autoscale-sessions 10]

Drain: a `ray.cluster_utils.Cluster` with a head without sessions and one worker of N; N paired sessions
on the simulated network, all on that worker. A second worker of N joins, then a drain of the first is
requested (a `fleet_operation` row, as `POST /ops/nodes/{nodeId}/drain` stores it) and the registry moves
every session off it (one graceful stop and one reconnect each, `--rate` moves a second, `--parallel` at
a time). Measured: from the request to the row saying `done`, and per session from the request to
`connected` on the new node (p50, max); every session must be connected again, none asking for a QR.

Autoscale: Ray's fake multi-node provider (tests/autoscalekit.py), a head without sessions, workers of
`--per-worker` sessions, at most enough for `--autoscale-sessions`. Measured from the registry's
creation of the sessions: when the first is reported pending, when the first worker node is up, and
when each session is `connected` (p50, max).

Full size: about 6 min on 2 cores (50 sessions paired, drained; 10 autoscaled).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import time
from collections.abc import Sequence
from typing import Any

import ray

from actors import fleet
from actors.registry import RegistryConfig, start_registry
from persistence.stores import PostgresStores
from tests.benchmarks import benchkit as bk
from tests.opskit import request_drain, wait_operation

STORE = 80 * 1024 * 1024


async def drain_round(args: argparse.Namespace, services: bk.Services) -> dict[str, Any]:
    from ray.cluster_utils import Cluster

    n = args.sessions
    namespace = "bench-drain"
    await bk.reset(services)
    sids = await bk.insert_sessions(services, n)
    saved = dict(os.environ)
    os.environ.update(bk.ray_node_env(bk.parse_env(args.worker_env)))
    cluster: Any = None
    try:
        cluster = Cluster(
            initialize_head=True,
            head_node_args={
                "num_cpus": 1,
                "resources": {"wa_session": 0},
                "include_dashboard": False,
                "object_store_memory": STORE,
            },
        )
        first = cluster.add_node(num_cpus=1, resources={"wa_session": n}, object_store_memory=STORE)
        ray.init(
            address=cluster.address,
            namespace=namespace,
            logging_level=logging.WARNING,
            configure_logging=False,
        )
        cluster.wait_for_nodes()
        config = RegistryConfig(
            services.database_url,
            namespace,
            bk.session_config(services),
            args.rate,
            moves_per_s=args.rate,
            moves_parallel=args.parallel,
            stores=PostgresStores(),
        )
        async with bk.StatusWatch(services.redis_url, set(sids)) as watch:
            start_registry(config)
            ok, pair_s = await bk.pair_all(watch, sids, namespace, args.timeout)
            if not ok:
                raise RuntimeError(f"only {watch.count('connected', sids)} of {n} sessions paired")
            print(f"  {n} paired in {pair_s:.0f}s, all on one node; a second node joins", flush=True)
            second = cluster.add_node(num_cpus=1, resources={"wa_session": n}, object_store_memory=STORE)
            cluster.wait_for_nodes()
            qr_before = len(watch.qr_at)
            for sid in sids:  # the next `connected` frame of each is its move
                watch.first.pop((sid, "connected"), None)
            t0 = time.monotonic()
            requested = await request_drain(services.database_url, first.node_id, planned=n)
            report = await wait_operation(
                services.database_url, requested.id, lambda op: op.state == "done", args.timeout
            )
            drained_s = time.monotonic() - t0
            await watch.wait(lambda: all((s, "connected") in watch.first for s in sids), 30)
            back = [watch.first[(s, "connected")] - t0 for s in sids if (s, "connected") in watch.first]
            placed = await bk.ping_all(sids, namespace)
            on_second = sum(
                1 for p in placed.values() if p.node_id == second.node_id and p.status == "connected"
            )
            result = {
                "sessions": n,
                "rate": args.rate,
                "parallel": args.parallel,
                "drained": report.state == "done",
                "drain_s": round(drained_s, 1),
                "moved": len(report.moved),
                "failed": sum(1 for m in report.moved if m["error"] or not m["toNode"]),
                "connected_after_s": bk.percentiles(back),
                "connected_on_new_node": on_second,
                "qr_frames": len(watch.qr_at) - qr_before,
                "first_node_left": fleet.sessions_on(namespace, first.node_id),
            }
        bk.kill_actors(namespace)
        return result
    finally:
        ray.shutdown()
        if cluster is not None:
            cluster.shutdown()
        os.environ.clear()
        os.environ.update(saved)


async def autoscale_round(args: argparse.Namespace, services: bk.Services) -> dict[str, Any]:
    from tests.autoscalekit import autoscaling_cluster

    n = args.autoscale_sessions
    namespace = "bench-autoscale"
    workers = math.ceil(n / args.per_worker)
    await bk.reset(services)
    sids = await bk.insert_sessions(services, n, prefix="auto")
    with autoscaling_cluster(args.per_worker, workers, namespace=namespace):
        config = RegistryConfig(
            services.database_url, namespace, bk.session_config(services), args.rate, stores=PostgresStores()
        )
        async with bk.StatusWatch(services.redis_url, set(sids)) as watch:
            t0 = time.monotonic()
            registry = start_registry(config)
            first_pending = first_node = None
            pairing = asyncio.create_task(bk.pair_all(watch, sids, namespace, args.timeout))
            while not pairing.done():
                now = time.monotonic() - t0
                if first_pending is None and (await registry.pending.remote()).count:
                    first_pending = now
                if first_node is None and any(not nd.is_head and nd.alive for nd in fleet.nodes()):
                    first_node = now
                await asyncio.sleep(0.2)
            ok, _ = await pairing
            connected = [watch.first[(s, "connected")] - t0 for s in sids if (s, "connected") in watch.first]
            nodes = sum(1 for nd in fleet.nodes() if nd.alive and not nd.is_head)
        bk.kill_actors(namespace)
    return {
        "sessions": n,
        "per_worker": args.per_worker,
        "all_connected": ok,
        "first_pending_s": None if first_pending is None else round(first_pending, 1),
        "first_node_s": None if first_node is None else round(first_node, 1),
        "connected_after_s": bk.percentiles(connected),
        "worker_nodes": nodes,
    }


def report(results: dict[str, Any]) -> None:
    d = results["drain"]
    bk.print_table(
        "Drain: a node of N sessions (seconds from the drain's start)",
        ["N", "moves/s", "parallel", "drain", "p50 back", "max back", "on new node", "failed", "QR frames"],
        [
            [
                d["sessions"],
                d["rate"],
                d["parallel"],
                d["drain_s"] if d["drained"] else "not done",
                d["connected_after_s"]["p50"],
                d["connected_after_s"]["max"],
                d["connected_on_new_node"],
                d["failed"],
                d["qr_frames"],
            ]
        ],
    )
    a = results.get("autoscale")
    if a:
        bk.print_table(
            "Autoscale up: sessions waiting for capacity (seconds from their creation)",
            ["N", "per node", "first pending", "first node up", "p50 connected", "all connected", "nodes"],
            [
                [
                    a["sessions"],
                    a["per_worker"],
                    a["first_pending_s"],
                    a["first_node_s"],
                    a["connected_after_s"]["p50"],
                    a["connected_after_s"]["max"] if a["all_connected"] else "timeout",
                    a["worker_nodes"],
                ]
            ],
        )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench_drain", description=__doc__.split("\n")[0])
    p.add_argument("--sessions", type=int, default=50, help="sessions on the drained node")
    p.add_argument("--rate", type=float, default=2.0, help="moves (and creations) per second")
    p.add_argument("--parallel", type=int, default=4, help="moves in flight at once")
    p.add_argument("--autoscale-sessions", type=int, default=10, help="0: skip the autoscale part")
    p.add_argument("--per-worker", type=int, default=4, help="wa_session of each autoscaled worker")
    p.add_argument("--timeout", type=float, default=600.0)
    p.add_argument("--worker-env", action="append", default=[], help="KEY=VALUE for Ray's processes")
    return p


async def run(args: argparse.Namespace) -> dict[str, Any]:
    services = bk.Services.from_env()
    await bk.check_connection_budget(services, max(args.sessions, args.autoscale_sessions))
    results: dict[str, Any] = {"drain": await drain_round(args, services)}
    if args.autoscale_sessions:
        results["autoscale"] = await autoscale_round(args, services)
    return results


def main(argv: Sequence[str] | None = None) -> None:
    bk.run_benchmark("drain", parser().parse_args(argv), run, report)


if __name__ == "__main__":
    main()
