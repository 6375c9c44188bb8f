"""Idle CPU of a Ray custom metric per session process: metrics collection off vs on, with and without a
status gauge (`gauge_actor.GaugeActor`) in each process.

    python -m tests.benchmarks.bench_metrics [--n 10] [--settle-s 20] [--idle-s 60] [--runs off,on,on+gauge]

Three runs on a fresh local Ray each (`benchkit.local_ray`, the local run's node settings):
  off        RAY_enable_metrics_collection=0 (today), `BareActor`s: Ray's floor
  on         RAY_enable_metrics_collection=1, `BareActor`s: what turning collection on costs by itself
  on+gauge   RAY_enable_metrics_collection=1, `GaugeActor`s: a gauge set through 4 transitions at start
CPU is sampled as in bench_memory (utime+stime from /proc over the window), for the actor processes and
for Ray's own (GCS, raylet, dashboard, agents).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Sequence
from typing import Any

import ray

from tests.benchmarks import benchkit as bk
from tests.benchmarks.bare import create_bare_actor
from tests.benchmarks.bench_memory import sample
from tests.benchmarks.gauge_actor import STATUSES, create_gauge_actor

RUNS = (("off", "0", False), ("on", "1", False), ("on+gauge", "1", True))


async def _up(namespace: str, n: int, gauge: bool) -> dict[str, int]:
    create = create_gauge_actor if gauge else create_bare_actor
    prefix = "gauge" if gauge else "bare"
    for i in range(n):
        create(namespace, i)
        await asyncio.sleep(0.5)
    handles = [ray.get_actor(f"{prefix}-{i}", namespace=namespace) for i in range(n)]
    pids: list[int] = await asyncio.wait_for(asyncio.gather(*(h.ping.remote() for h in handles)), 180)
    if gauge:
        for status in STATUSES[1:]:
            await asyncio.gather(*(h.transition.remote(status) for h in handles))
    return {f"{prefix}-{i}": pid for i, pid in enumerate(pids)}


async def run_one(name: str, collection: str, gauge: bool, args: argparse.Namespace) -> dict[str, Any]:
    env = {**bk.WORKER_ENV, "RAY_enable_metrics_collection": collection}
    with bk.local_ray(args.n, worker_env=env) as node:
        pids = await _up(node.namespace, args.n, gauge)
        await asyncio.sleep(args.settle_s)
        result = await sample(pids, args.idle_s)
        bk.kill_actors(node.namespace)
    per = result["cpu_pct_per_session"]
    print(
        f"{name:9} sessions={result['sessions']} cpu%/session mean={per.get('mean')} p50={per.get('p50')}"
        f" max={per.get('max')} ray_own_cpu%={result['ray_baseline_cpu_pct']:.2f}"
        f" by_role={ {r: round(v['cpu_pct'], 2) for r, v in result['ray_baseline'].items()} }",
        flush=True,
    )
    result.pop("per_process")
    return {"run": name, **result}


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    known = {name: (collection, gauge) for name, collection, gauge in RUNS}
    return [await run_one(name, *known[name], args) for name in args.runs.split(",")]


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=10)
    p.add_argument("--settle-s", type=float, default=20.0)
    p.add_argument("--idle-s", type=float, default=60.0)
    p.add_argument("--runs", default="off,on,on+gauge", help="which runs, in this order (repeats allowed)")
    args = p.parse_args(argv)
    results = asyncio.run(run(args))
    print(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
