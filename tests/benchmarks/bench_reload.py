"""Benchmark 3: cold reload. N paired sessions, the whole Ray cluster stopped and started again: how long
until every session is `connected` again, and at what stagger rate.

    .venv/bin/python -m tests.benchmarks.bench_reload [--sizes 50,200] [--rate 2]

For each N, on the simulated network: N session rows, the real SessionRegistry starts them (staggered at
`--rate`/s, the `SESSION_RELOAD_PER_S` setting), each is paired by a scan. Then Ray is shut down (every
process gone: only PostgreSQL remains, as after a full restart) and started anew, and a new registry is
started, as the service does at start-up. Measured: Ray's start, then from the registry's start until
each session publishes `connected` (p50/p90/max), the achieved rate, and that no session asked for a scan.

Full size (50 and 200): about 12 min on 2 cores. Target: 200 sessions back in <= 150 s.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from typing import Any

import asyncpg

from actors.registry import RegistryConfig, start_registry
from persistence.stores import PostgresStores
from tests.benchmarks import benchkit as bk


async def _devices(services: bk.Services, sids: Sequence[str]) -> dict[str, str | None]:
    conn = await asyncpg.connect(services.database_url, timeout=10)
    try:
        rows = await conn.fetch(
            "SELECT id::text AS id, device_jid FROM whatsapp_session WHERE id = ANY($1::uuid[])", list(sids)
        )
    finally:
        await conn.close()
    return {r["id"]: r["device_jid"] for r in rows}


async def run_one(n: int, services: bk.Services, args: argparse.Namespace) -> dict[str, Any]:
    env = bk.parse_env(args.worker_env)
    namespace = f"bench-reload-{n}"
    await bk.reset(services)
    sids = await bk.insert_sessions(services, n)
    config = RegistryConfig(
        services.database_url, namespace, bk.session_config(services), args.rate, stores=PostgresStores()
    )

    print(f"\n== N={n}: pairing", flush=True)
    with bk.local_ray(n + 5, namespace=namespace, dashboard=args.dashboard, worker_env=env):
        async with bk.StatusWatch(services.redis_url, set(sids)) as watch:
            start_registry(config)
            ok, pair_s = await bk.pair_all(watch, sids, namespace, args.timeout)
        if not ok:
            raise RuntimeError(f"only {watch.count('connected', sids)} of {n} sessions paired")
        print(f"  {n} paired in {pair_s:.0f}s; stopping the whole cluster", flush=True)
    devices = await _devices(services, sids)

    print("  starting a new cluster", flush=True)
    ray_started = time.monotonic()
    with bk.local_ray(n + 5, namespace=namespace, dashboard=args.dashboard, worker_env=env):
        ray_up = time.monotonic() - ray_started
        async with bk.StatusWatch(services.redis_url, set(sids)) as watch:
            t0 = time.monotonic()
            start_registry(config)
            ok = await watch.wait(
                lambda: watch.count("connected", sids) == n,
                args.timeout,
                progress=lambda: f"{watch.count('connected', sids)}/{n} connected",
                poll=lambda: bk.poll_into(watch, sids, namespace, "connected"),
            )
            elapsed = time.monotonic() - t0
        connected_at = [t - t0 for (_, status), t in watch.first.items() if status == "connected"]
        first_frame = [min(t for (s, _), t in watch.first.items() if s == sid) - t0 for sid in watch.since]
        asked_scan = [sid for sid in sids if sid in watch.qr_at or (sid, "qr_ready") in watch.first]
        bk.kill_actors(namespace)
    after = await _devices(services, sids)
    kept_device = sum(1 for sid, jid in after.items() if jid and jid == devices.get(sid))
    return {
        "n": n,
        "rate_per_s": args.rate,
        "all_connected": ok,
        "connected": watch.count("connected", sids),
        "pairing_s": round(pair_s, 1),
        "ray_start_s": round(ray_up, 1),
        "reload_s": round(elapsed, 1),
        "total_s": round(ray_up + elapsed, 1),
        "connected_after_s": bk.percentiles(connected_at),
        "first_frame_after_s": bk.percentiles(first_frame),
        "achieved_rate_per_s": round(n / max(first_frame), 2) if first_frame else None,
        "asked_for_scan": len(asked_scan),
        "kept_device": kept_device,
    }


def report(results: list[dict[str, Any]]) -> None:
    bk.print_table(
        "Cold reload: whole cluster stopped and started (seconds)",
        [
            "N",
            "rate/s",
            "Ray start",
            "all connected",
            "p50",
            "p90",
            "achieved/s",
            "scans asked",
            "kept device",
        ],
        [
            [
                r["n"],
                r["rate_per_s"],
                r["ray_start_s"],
                r["reload_s"] if r["all_connected"] else f"{r['connected']}/{r['n']} in {r['reload_s']}",
                r["connected_after_s"]["p50"],
                r["connected_after_s"]["p90"],
                r["achieved_rate_per_s"],
                r["asked_for_scan"],
                r["kept_device"],
            ]
            for r in results
        ],
    )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench_reload", description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="50,200")
    p.add_argument("--rate", type=float, default=2.0, help="session starts per second (SESSION_RELOAD_PER_S)")
    bk.ray_options(p, timeout_s=900.0)
    return p


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    services = bk.Services.from_env()
    sizes = bk.parse_sizes(args.sizes)
    await bk.check_connection_budget(services, max(sizes))
    return [await run_one(n, services, args) for n in sizes]


def main(argv: Sequence[str] | None = None) -> None:
    bk.run_benchmark("reload", parser().parse_args(argv), run, report)


if __name__ == "__main__":
    main()
