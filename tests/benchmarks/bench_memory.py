"""Benchmark 1: memory and idle CPU per session process, at N = 10, 50, 100, 200 sessions.

    .venv/bin/python -m tests.benchmarks.bench_memory [--backends bare,simulated,neonize]
        [--sizes 10,50,100,200] [--idle-s 60] [--settle-s 20] [--rate 2] [--worker-env KEY=VALUE ...]

For each backend and N, on a fresh single-node Ray (benchkit.local_ray, dashboard on as in the local run):
- `simulated`: N session rows; the real SessionRegistry creates the actors (staggered at `--rate`/s);
  each is paired on the simulated network as soon as it shows a QR; measured once all are `connected`.
- `neonize`: WhatsApp is unreachable here (no DNS), so a session dials, fails within a second and
  recycles; its fresh process waits a backoff (capped at 300 s by the session: `--backoff-base` only
  chooses within that cap) *before* importing neonize. So the benchmark, in each fresh process, builds the
  session's real `NeonizeClient` and dials once (`ProbeSessionActor.load_neonize`): neonize imported, Go
  runtime up, whatsmeow client and its PostgreSQL store open, like a live session minus what a logged-in
  account adds (Signal sessions, app state: not measurable offline). The session core sits idle in its
  backoff meanwhile, so the sample is a steady floor.
- `bare`: N minimal async actors: Ray's own per-process floor on the same node.
Then, after `--settle-s`, for `--idle-s` seconds: PSS/USS/RSS of every session process from
/proc/<pid>/smaps_rollup (pids from each actor's `ping()`), CPU from /proc/<pid>/stat (utime + stime
delta over the window), and the same for Ray's own processes (gcs_server, raylet, dashboard, agents,
log_monitor, the registry, idle workers). A process that restarted during the window is reported.

Full size: about 10 min (bare), 12 (simulated), 14 (neonize) on 2 cores (start-up runs at ~1.5-2
processes/s). PostgreSQL needs max_connections >= 3 x N + 50 (each session keeps its own connections;
neonize adds whatsmeow's pool).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import ray

from actors.registry import RegistryConfig, start_registry
from persistence.stores import PostgresStores
from tests.benchmarks import benchkit as bk
from tests.benchmarks.bare import create_bare_actor
from tests.benchmarks.probes import create_probe_actor

BACKENDS = ("simulated", "neonize", "bare")


async def _paced(count: int, rate: float, create: Any) -> None:
    for i in range(count):
        create(i)
        await asyncio.sleep(1.0 / rate)


async def up_bare(node: bk.RayNode, n: int, rate: float, timeout: float, *, first: int = 0) -> dict[str, int]:
    """Start bare actors `first` .. `first + n - 1`, `rate` a second; their pids by name."""
    await _paced(n, rate, lambda i: create_bare_actor(node.namespace, first + i))
    names = [f"bare-{i}" for i in range(first, first + n)]
    handles = {name: ray.get_actor(name, namespace=node.namespace) for name in names}
    pids: list[int] = await asyncio.wait_for(
        asyncio.gather(*(h.ping.remote() for h in handles.values())), timeout
    )
    return dict(zip(handles, pids, strict=True))


async def up_simulated(
    node: bk.RayNode, services: bk.Services, n: int, rate: float, timeout: float
) -> dict[str, int]:
    sids = await bk.insert_sessions(services, n)
    config = RegistryConfig(
        services.database_url, node.namespace, bk.session_config(services), rate, stores=PostgresStores()
    )
    async with bk.StatusWatch(services.redis_url, set(sids)) as watch:
        start_registry(config)
        ok, took = await bk.pair_all(watch, sids, node.namespace, timeout)
    print(f"  {watch.count('connected', sids)}/{n} connected after {took:.0f}s")
    if not ok:
        raise RuntimeError(f"only {watch.count('connected', sids)} of {n} sessions connected")
    return await _pids(sids, node.namespace)


async def up_neonize(
    node: bk.RayNode,
    services: bk.Services,
    n: int,
    rate: float,
    timeout: float,
    *,
    backoff_base_s: float,
    dial: bool,
    block: tuple[str, ...],
) -> dict[str, int]:
    sids = await bk.insert_sessions(services, n)
    session = bk.session_config(services, "neonize", backoff_base_s=backoff_base_s, connect_timeout_s=3600.0)
    config = RegistryConfig(services.database_url, node.namespace, session, rate, stores=PostgresStores())
    loaded: dict[str, int] = {}
    pending: set[asyncio.Task[None]] = set()

    async def load(sid: str) -> None:
        handle = bk.session_handle(sid, node.namespace)
        for _ in range(30):  # the call may reach the failed process as it exits, or one still starting
            try:
                info = await asyncio.wait_for(handle.load_neonize.remote(dial, block), 60)
                loaded[sid] = int(info["pid"])
                return
            except Exception:
                await asyncio.sleep(1.0)
        print(f"  warning: could not load neonize into session {sid}")

    def on_status(sid: str, status: str) -> None:
        # The first dial failed: the process recycles, and its successor waits out the backoff.
        if status == "disconnected" and sid not in loaded and all(t.get_name() != sid for t in pending):
            task = asyncio.get_running_loop().create_task(load(sid), name=sid)
            pending.add(task)
            task.add_done_callback(pending.discard)

    async with bk.StatusWatch(services.redis_url, set(sids), on_status=on_status) as watch:
        await _paced(n, rate, lambda i: create_probe_actor(config, sids[i]))
        start_registry(config)  # supervises and pings them like any session
        ok = await watch.wait(
            lambda: len(loaded) == n,
            timeout,
            progress=lambda: f"{len(loaded)}/{n} loaded neonize",
        )
        for task in list(pending):
            task.cancel()
    if not ok:
        raise RuntimeError(f"neonize loaded in only {len(loaded)} of {n} sessions")
    return await _pids(sids, node.namespace)


async def _pids(sids: Sequence[str], namespace: str) -> dict[str, int]:
    placements = await bk.ping_all(sids, namespace, timeout=30)
    return {sid: int(p.pid) for sid, p in placements.items()}


async def sample(pids: dict[str, int], idle_s: float) -> dict[str, Any]:
    """Memory at the end and CPU over `idle_s` of the session processes and of Ray's own."""
    session_pids = set(pids.values())
    # CPU each process used since it started: its start-up (imports, connecting) plus the settle time.
    lifetime_cpu = [c for pid in session_pids if (c := bk.cpu_seconds(pid)) is not None]
    others = bk.ray_processes(exclude=session_pids)
    window = bk.CpuWindow([*session_pids, *others])
    window.start()
    await asyncio.sleep(idle_s)
    wall, shares = window.stop()
    sessions = {pid: m for pid in session_pids if (m := bk.Mem.of(pid)) is not None}
    roles: dict[str, dict[str, float]] = defaultdict(lambda: {"count": 0, "pss_mib": 0.0, "cpu_pct": 0.0})
    for pid, role in others.items():
        mem = bk.Mem.of(pid)
        if mem is None:
            continue
        roles[role]["count"] += 1
        roles[role]["pss_mib"] += mem.pss
        roles[role]["cpu_pct"] += 100 * shares.get(pid, 0.0)
    cpu = [100 * shares[pid] for pid in session_pids if pid in shares]
    pss = [m.pss for m in sessions.values()]
    return {
        "window_s": round(wall, 1),
        "sessions": len(sessions),
        "pss_mib": bk.percentiles(pss),
        "uss_mib_mean": statistics.fmean(m.uss for m in sessions.values()) if sessions else None,
        "rss_mib_mean": statistics.fmean(m.rss for m in sessions.values()) if sessions else None,
        "pss_total_mib": sum(pss),
        "cpu_pct_per_session": bk.percentiles(cpu),
        "cpu_pct_total": sum(cpu),
        "cpu_s_since_start": bk.percentiles(lifetime_cpu),
        "ray_baseline": {role: dict(v) for role, v in sorted(roles.items())},
        "ray_baseline_pss_mib": sum(v["pss_mib"] for v in roles.values()),
        "ray_baseline_cpu_pct": sum(v["cpu_pct"] for v in roles.values()),
        "per_process": [asdict(m) for m in sessions.values()],
    }


async def run_one(
    backend: str, n: int, services: bk.Services, args: argparse.Namespace, worker_env: dict[str, str]
) -> dict[str, Any]:
    namespace = f"bench-mem-{backend}-{n}"
    with bk.local_ray(n + 5, namespace=namespace, worker_env=worker_env, dashboard=args.dashboard) as node:
        await bk.reset(services)
        started = time.monotonic()
        try:
            if backend == "bare":
                pids = await up_bare(node, n, args.rate, args.timeout)
            elif backend == "simulated":
                pids = await up_simulated(node, services, n, args.rate, args.timeout)
            else:
                pids = await up_neonize(
                    node,
                    services,
                    n,
                    args.rate,
                    args.timeout,
                    backoff_base_s=args.backoff_base,
                    dial=args.dial,
                    block=tuple(args.block),
                )
            up_s = time.monotonic() - started
            print(f"  {len(pids)} up in {up_s:.0f}s; settle {args.settle_s:.0f}s, sample {args.idle_s:.0f}s")
            await asyncio.sleep(args.settle_s)
            result = await sample(pids, args.idle_s)
            after = await _pids(list(pids), namespace) if backend != "bare" else pids
            result["restarted_during_sample"] = sum(1 for sid, pid in pids.items() if after.get(sid) != pid)
            if args.trim and backend == "neonize":  # the probe actor has trim(); plain sessions do not
                await asyncio.gather(*(bk.session_handle(s, namespace).trim.remote() for s in pids))
                trimmed = [m.pss for pid in pids.values() if (m := bk.Mem.of(pid)) is not None]
                result["pss_mib_after_malloc_trim"] = bk.percentiles(trimmed)
            result.update(backend=backend, n=n, up_s=round(up_s, 1), worker_env=worker_env)
            return result
        finally:
            bk.kill_actors(namespace)


def report(results: list[dict[str, Any]]) -> None:
    rows = [
        [
            r["backend"],
            r["n"],
            r["pss_mib"]["mean"],
            r["pss_mib"]["max"],
            r["uss_mib_mean"],
            r["pss_total_mib"],
            r["cpu_pct_per_session"]["mean"],
            r["cpu_pct_per_session"]["max"],
            r["cpu_pct_total"],
            r["ray_baseline_pss_mib"],
            r["ray_baseline_cpu_pct"],
            r["restarted_during_sample"],
        ]
        for r in results
    ]
    bk.print_table(
        "Memory (MiB) and idle CPU (% of one core) per session process",
        [
            "backend",
            "N",
            "PSS/sess",
            "PSS max",
            "USS/sess",
            "PSS all",
            "CPU/sess%",
            "CPU max%",
            "CPU all%",
            "Ray PSS",
            "Ray CPU%",
            "restarts",
        ],
        rows,
    )
    last = results[-1]
    bk.print_table(
        f"Ray's own processes ({last['backend']}, N={last['n']})",
        ["process", "count", "PSS MiB", "CPU %"],
        [[k, v["count"], v["pss_mib"], v["cpu_pct"]] for k, v in last["ray_baseline"].items()],
    )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench_memory", description=__doc__.split("\n")[0])
    p.add_argument("--backends", default="bare,simulated,neonize", help=f"comma-separated, of {BACKENDS}")
    p.add_argument("--sizes", default="10,50,100,200")
    p.add_argument("--idle-s", type=float, default=60.0)
    p.add_argument("--settle-s", type=float, default=20.0)
    p.add_argument("--rate", type=float, default=2.0, help="session starts per second")
    p.add_argument("--backoff-base", type=float, default=3600.0)
    p.add_argument("--no-dial", dest="dial", action="store_false", help="neonize: build the client only")
    p.add_argument("--block", action="append", default=[], help="neonize: module to keep out (lever)")
    p.add_argument("--trim", action="store_true", help="also measure PSS after gc + malloc_trim(0)")
    bk.ray_options(p, timeout_s=900.0, timeout_help="bring-up limit per size, seconds")
    p.add_argument("--name", default="memory", help="result file prefix")
    return p


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    services = bk.Services.from_env()
    worker_env = bk.parse_env(args.worker_env)
    sizes = bk.parse_sizes(args.sizes)
    backends = [b for b in args.backends.split(",") if b]
    if unknown := set(backends) - set(BACKENDS):
        raise SystemExit(f"unknown backend(s): {sorted(unknown)}")
    if set(backends) - {"bare"}:
        # A neonize session adds whatsmeow's own pool to the store's connection.
        await bk.check_connection_budget(services, max(sizes), per_session=3 if "neonize" in backends else 2)
    results = []
    for backend in backends:
        for n in sizes:
            print(f"\n== {backend}, N={n}", flush=True)
            results.append(await run_one(backend, n, services, args, worker_env))
    return results


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
    bk.run_benchmark(args.name, args, run, report)


if __name__ == "__main__":
    main()
