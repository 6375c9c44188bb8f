"""Benchmark 12: the CPU one `send_text` costs a session, PostgreSQL and Redis (issue 24), counted from
the processes' CPU counters, so a loaded machine slows it but does not change the figure much.

    .venv/bin/python -m tests.benchmarks.bench_send_cpu [--sends 2000] [--clients 10] [--profile]

One session (`SessionCore`, the simulated network, as in a session process but without Ray) on the
benchmark's PostgreSQL and a private Valkey. `--clients` concurrent callers send `--sends` texts; the
figures run from the first send until the journal applied every write and the bus sent every event:
this process's CPU (the session and the simulated network's side of WhatsApp), the CPU of the
PostgreSQL backends serving the session's connections, and Valkey's, each per send. `--profile` prints
the session's hottest functions (cProfile, by own time).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import asyncpg
import psutil

from api.local_valkey import EmbeddedValkey
from kernel.domain import SessionStatus
from tests.benchmarks import benchkit as bk
from tests.raykit import eventually
from tests.sessionkit import session_factory, wait_status


async def _pg_backends(url: str) -> list[int]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await conn.close()
    return [int(r["pid"]) for r in rows]


def _cpu(pids: Sequence[int]) -> float:
    return sum(bk.cpu_seconds(p) or 0.0 for p in pids)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    services = bk.Services.from_env()
    await bk.reset(services)
    with (
        tempfile.TemporaryDirectory(prefix="wab-bench-send-") as folder,
        EmbeddedValkey(Path(folder) / "valkey") as valkey,
    ):
        server = next(
            p
            for p in psutil.process_iter(["cmdline"])
            if str(valkey.port) in " ".join(p.info["cmdline"] or [])
        )
        async with session_factory(services.database_url, valkey.url, Path(folder) / "spool") as build:
            session, _ = await build()
            await wait_status(session, SessionStatus.QR_READY, 60)
            await session.simulate("scan", phone="+15551238000", display_name=None)
            await wait_status(session, SessionStatus.CONNECTED, 60)
            for n in range(50):  # warm: connections, caches
                await session.send_text("+15551230001", f"warm {n}")
            await asyncio.sleep(2.0)
            backends = await _pg_backends(services.database_url)
            counter = iter(range(args.sends))
            profile = cProfile.Profile() if args.profile else None

            async def caller() -> None:
                for n in counter:
                    await session.send_text("+15551230001", f"bench {n}")  # as benchmark 5 sends

            before = (time.process_time(), _cpu(backends), sum(server.cpu_times()[:2]))
            started = time.monotonic()
            if profile is not None:
                profile.enable()
            await asyncio.gather(*(caller() for _ in range(args.clients)))
            sent_s = time.monotonic() - started
            state = session._state
            assert state.journal is not None
            await state.journal.wait_drained(120)
            await eventually(lambda: asyncio.sleep(0, state.bus.waiting), lambda n: n == 0, 120, every=0.05)
            await asyncio.sleep(1.0)  # receipts from the simulated network, and their writes
            await state.journal.wait_drained(120)
            if profile is not None:
                profile.disable()
            after = (time.process_time(), _cpu(backends), sum(server.cpu_times()[:2]))
    per = {
        name: round((b - a) * 1000 / args.sends, 3)
        for name, a, b in zip(("session", "postgres", "valkey"), before, after, strict=True)
    }
    out: dict[str, Any] = {
        "sends": args.sends,
        "clients": args.clients,
        "sends_per_s": round(args.sends / sent_s, 1),
        "cpu_ms_per_send": {**per, "total": round(sum(per.values()), 3)},
    }
    if profile is not None:
        text = io.StringIO()
        pstats.Stats(profile, stream=text).sort_stats("tottime").print_stats(40)
        out["profile"] = text.getvalue()
    return out


def report(out: dict[str, Any]) -> None:
    cpu = out["cpu_ms_per_send"]
    bk.print_table(
        f"send_text CPU, {out['sends']} sends from {out['clients']} callers (ms per send)",
        ["session", "PostgreSQL", "Valkey", "total", "sends/s (loaded machine)"],
        [[cpu["session"], cpu["postgres"], cpu["valkey"], cpu["total"], out["sends_per_s"]]],
    )
    if "profile" in out:
        print(out.pop("profile"))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench_send_cpu", description=__doc__.split("\n")[0])
    p.add_argument("--sends", type=int, default=2000)
    p.add_argument("--clients", type=int, default=10)
    p.add_argument("--profile", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> None:
    bk.run_benchmark("send_cpu", parser().parse_args(argv), run, report)


if __name__ == "__main__":
    main()
