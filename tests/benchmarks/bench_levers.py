"""What each memory lever changes in a session process: import costs inside a worker, then PSS/USS/CPU
of N sessions (default 10) per variant of the worker environment and of what neonize is allowed to import.

    .venv/bin/python -m tests.benchmarks.bench_levers [--n 10] [--idle-s 10] [--only imports|variants]

Part 1 (imports): in a fresh Ray worker per module, the private memory (USS) and time one import adds,
after what every session worker has anyway (Ray's worker, and the pydantic Ray's serializer registry
imports as soon as a worker deserialises an argument).
Part 2 (variants): benchmark 1's measurement (bench_memory.run_one) at one N for each variant below, each on
a fresh Ray whose processes get exactly that environment. About 8 minutes at the defaults.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from typing import Any

from tests.benchmarks import bench_memory
from tests.benchmarks import benchkit as bk

PYDANTIC_VIA_RAY = "ray._common.pydantic_compat"
HTTPX_CLI = "httpx._main"  # httpx's command-line client: rich, click, pygments

# (label, module, imported first, kept out)
IMPORTS: list[tuple[str, str, list[str], list[str]]] = [
    ("pydantic (Ray's serializer registry)", PYDANTIC_VIA_RAY, [], []),
    ("redis.asyncio (what actors.bus used before)", "redis.asyncio", [PYDANTIC_VIA_RAY], []),
    ("actors.publisher (what actors.bus uses now)", "actors.publisher", [PYDANTIC_VIA_RAY], []),
    ("asyncpg (session store)", "asyncpg", [PYDANTIC_VIA_RAY], []),
    ("actors.actor (whole session shell)", "actors.actor", [PYDANTIC_VIA_RAY], []),
    ("+ simulated client", "actors.clients.simulated", [PYDANTIC_VIA_RAY, "actors.actor"], []),
    ("+ neonize (as imported today)", "neonize.aioze.client", [PYDANTIC_VIA_RAY, "actors.actor"], []),
    (
        "+ neonize without httpx's CLI",
        "neonize.aioze.client",
        [PYDANTIC_VIA_RAY, "actors.actor"],
        [HTTPX_CLI],
    ),
    (
        "the adapter package (actors.clients.neonize)",
        "actors.clients.neonize",
        [PYDANTIC_VIA_RAY, "actors.actor"],
        [],
    ),
    ("Go's runtime alone (neonize's library loaded)", "tests.benchmarks.go_runtime", [PYDANTIC_VIA_RAY], []),
    ("httpx (pulled by neonize)", "httpx", [PYDANTIC_VIA_RAY, "actors.actor"], []),
    ("httpx without its CLI", "httpx", [PYDANTIC_VIA_RAY, "actors.actor"], [HTTPX_CLI]),
]

NO_LEVERS = {"NEONIZE_BOT_TAG": "off"}
ARENAS = {**NO_LEVERS, "MALLOC_ARENA_MAX": "2"}
# (label, backend, worker environment, modules kept out of neonize's import)
VARIANTS: list[tuple[str, str, dict[str, str], tuple[str, ...]]] = [
    ("Ray floor (bare actor)", "bare", NO_LEVERS, ()),
    ("Ray floor + MALLOC_ARENA_MAX=2", "bare", ARENAS, ()),
    ("simulated", "simulated", NO_LEVERS, ()),
    ("simulated + MALLOC_ARENA_MAX=2", "simulated", ARENAS, ()),
    ("neonize", "neonize", NO_LEVERS, ()),
    ("neonize + MALLOC_ARENA_MAX=2", "neonize", ARENAS, ()),
    ("neonize + GOGC=50", "neonize", {**NO_LEVERS, "GOGC": "50"}, ()),
    ("neonize + GOMEMLIMIT=24MiB", "neonize", {**NO_LEVERS, "GOMEMLIMIT": "24MiB"}, ()),
    # The adapter package keeps httpx's CLI out, so "neonize" above is already without it (-4 MiB).
]


async def import_costs() -> list[dict[str, Any]]:
    import ray

    from tests.benchmarks.bare import ImportProbe

    rows = []
    with bk.local_ray(2, namespace="bench-imports", dashboard=False):
        remote: Any = ray.remote(ImportProbe)
        for label, module, pre, block in IMPORTS:
            probe = remote.options(num_cpus=0).remote()
            cost = await probe.cost.remote(module, pre, block)
            ray.kill(probe)
            rows.append({"label": label, "module": module, "pre": pre, "block": block, **cost})
            print(f"  {label}: +{cost['uss_mib']:.1f} MiB", flush=True)
    return rows


async def variants(args: argparse.Namespace) -> list[dict[str, Any]]:
    services = bk.Services.from_env()
    await bk.check_connection_budget(services, args.n)
    results = []
    for label, backend, env, block in VARIANTS:
        print(f"\n== {label}", flush=True)
        run_args = bench_memory.parser().parse_args(
            [
                f"--idle-s={args.idle_s}",
                f"--settle-s={args.settle_s}",
                "--no-dashboard",
                "--trim",
                *(f"--block={b}" for b in block),
            ]
        )
        result = await bench_memory.run_one(backend, args.n, services, run_args, env)
        result.pop("per_process", None)
        results.append({"label": label, "block": list(block), **result})
    return results


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="bench_levers", description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=10)
    p.add_argument("--idle-s", type=float, default=10.0)
    p.add_argument("--settle-s", type=float, default=5.0)
    p.add_argument("--only", choices=("imports", "variants"))
    args = p.parse_args(argv)
    machine = bk.machine_info()
    bk.migrate(bk.Services.from_env())
    out: dict[str, Any] = {}
    if args.only != "variants":
        out["imports"] = asyncio.run(import_costs())
        bk.print_table(
            "Import cost inside a Ray worker",
            ["import", "USS MiB", "modules", "seconds"],
            [[r["label"], r["uss_mib"], r["modules"], round(r["seconds"], 2)] for r in out["imports"]],
        )
    if args.only != "imports":
        out["variants"] = asyncio.run(variants(args))
        bk.print_table(
            f"Levers, N={args.n} sessions (MiB; CPU in % of one core)",
            ["variant", "PSS/sess", "USS/sess", "RSS/sess", "trimmed PSS", "CPU/sess%", "Ray PSS"],
            [
                [
                    r["label"],
                    r["pss_mib"]["mean"],
                    r["uss_mib_mean"],
                    r["rss_mib_mean"],
                    (r.get("pss_mib_after_malloc_trim") or {}).get("mean"),
                    r["cpu_pct_per_session"]["mean"],
                    r["ray_baseline_pss_mib"],
                ]
                for r in out["variants"]
            ],
        )
    bk.write_result("levers", vars(args), out, machine)


if __name__ == "__main__":
    main()
