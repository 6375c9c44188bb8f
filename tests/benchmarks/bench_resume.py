"""Benchmark 10: 1,000 WebSockets reconnecting with a cursor right after an API restart (issue 24).

    .venv/bin/python -m tests.benchmarks.bench_resume [--users 1000] [--entries 100000] [--missed 20]

One session per user (rows only: Ray's node has no room for their processes, so none runs; a resume
needs none). The event log is filled as the sessions fill it (`kernel.event_index.APPEND`, through the
sessions' own publisher): `--entries` entries, round-robin over the sessions, a message frame's size
each. Each user's cursor is its own entry `--missed` from its end. The API is started, its `/health`
measured quiet (the floor), stopped, and started again; as soon as it answers, every user's WebSocket
reconnects with its cursor at once, while `/health` is probed at `--probe-rate`/s. Figures: `/health`
p50/p99 during the storm and its ratio to the floor measured the same run; each resume's time to its
last missed frame; whether each got exactly its own missed frames, in order; entries read from Redis per
resume (the API's `wab_ws_resume_entries`) against what reading the shared log from the cursor would
read; the API's PSS before and at its peak; CPU seconds of the API and Redis per resume.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time
import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg
import psutil
from redis.asyncio import Redis
from websockets.asyncio.client import connect

from actors.publisher import LoggedEvent, Publisher
from kernel.event_index import session_index
from kernel.wire import EVENTS_RETAINED, EVENTS_STREAM, channel, event_fields
from tests.benchmarks import apistack
from tests.benchmarks import benchkit as bk

BODY_PAD = "x" * 300  # a message frame's typical size


async def _rows(services: bk.Services, users: int) -> list[tuple[str, str]]:
    sessions = [(str(uuid.uuid4()), f"bench-resume-{n}") for n in range(users)]
    conn = await asyncpg.connect(services.database_url, timeout=10)
    try:
        await conn.executemany(
            "INSERT INTO whatsapp_session (id, user_id, slot, status)"
            " VALUES ($1::uuid, $2, 1, 'disconnected')",
            sessions,
        )
    finally:
        await conn.close()
    return sessions


async def _fill(services: bk.Services, sids: list[str], entries: int) -> dict[str, list[str]]:
    """Log `entries` events round-robin over `sids` as the sessions do; each session's entry ids."""
    publisher = Publisher(services.redis_url, timeout_s=30.0)
    ids: dict[str, list[str]] = {sid: [] for sid in sids}
    try:
        batch: list[tuple[str, LoggedEvent]] = []
        for n in range(entries):
            sid = sids[n % len(sids)]
            body = json.dumps({"chatId": "c@s.whatsapp.net", "message": {"n": n, "text": BODY_PAD}})
            fields = event_fields(sid, "msg", body, sid[:12], n + 1)
            batch.append((sid, LoggedEvent(channel("msg", sid), body, fields, session_index(sid))))
            if len(batch) == 1000 or n == entries - 1:
                got = await publisher.publish_logged(EVENTS_STREAM, EVENTS_RETAINED, [e for _, e in batch])
                for (s, _), entry_id in zip(batch, got, strict=True):
                    ids[s].append(entry_id)
                batch = []
    finally:
        await publisher.aclose()
    return ids


def _tree(pid: int) -> list[int]:
    try:
        return [pid, *(c.pid for c in psutil.Process(pid).children(recursive=True))]
    except psutil.Error:
        return [pid]


def _pss(pid: int) -> float:
    return sum(m.pss for p in _tree(pid) if (m := bk.Mem.of(p)) is not None)


def _cpu(pids: Sequence[int]) -> float:
    return sum(bk.cpu_seconds(p) or 0.0 for p in pids)


async def _metric(api: apistack.Api, name: str) -> float:
    async with api.client() as client:
        text = (await client.get("/metrics")).text
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " "))


async def _resume(
    api: apistack.Api, user: str, sid: str, cursor: str, want: list[str], timeout: float
) -> Any:
    """Reconnect with `cursor`: (seconds to its last missed frame, exactly `want` came?), or why not."""
    started = time.monotonic()
    url = f"{api.ws_url}?cursor={cursor}"
    try:
        async with connect(url, additional_headers=api.headers(user), open_timeout=timeout) as conn:
            got: list[str] = []
            stray = 0
            async with asyncio.timeout(timeout):
                while len(got) < len(want):
                    frame = json.loads(await conn.recv())
                    if frame["type"] == "message":
                        got.append(frame["cursor"])
                        stray += frame["sessionId"] != sid
                    elif frame["type"] == "resync":
                        return f"resync {frame['reason']}"
            return time.monotonic() - started, got == want and not stray
    except Exception as err:
        return type(err).__name__


async def run(args: argparse.Namespace) -> dict[str, Any]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    services = bk.Services.from_env()
    await bk.reset(services)
    sessions = await _rows(services, args.users)
    sids = [sid for sid, _ in sessions]
    filled = time.monotonic()
    ids = await _fill(services, sids, args.entries)
    print(f"  {args.entries} entries logged in {time.monotonic() - filled:.1f}s", flush=True)
    async with Redis.from_url(services.redis_url) as redis:
        shared = [i.decode() for i, _ in await redis.xrange(EVENTS_STREAM)]
        redis_pid = int((await redis.info("server"))["process_id"])
    position = {entry_id: n for n, entry_id in enumerate(shared)}
    plans = [(user, sid, ids[sid][-args.missed - 1], ids[sid][-args.missed :]) for sid, user in sessions]
    shared_reads = [len(shared) - 1 - position[cursor] for _, _, cursor, _ in plans]

    for attempt in (1, 2, 3):  # Ray's own 30 s start-up limit, missed on a machine this loaded
        try:
            return await _storm(args, services, plans, shared_reads, redis_pid)
        except Exception as err:
            if "timed out during startup" not in str(err) or attempt == 3:
                raise
            print(f"  Ray did not start ({err}); again", flush=True)
    raise AssertionError("unreachable")


async def _storm(
    args: argparse.Namespace,
    services: bk.Services,
    plans: list[tuple[str, str, str, list[str]]],
    shared_reads: list[int],
    redis_pid: int,
) -> dict[str, Any]:
    with bk.local_ray(1, namespace="bench-resume", dashboard=False) as node:
        env = {"SESSION_RELOAD_PER_S": "0.1"}
        with apistack.api_server(node, services, rate=0.1, env=env) as api:
            probe = await apistack.HealthProbe.start(api, args.probe_rate)
            await asyncio.sleep(args.floor_s)
            floor = await probe.stop()
        restarted = time.monotonic()
        with apistack.api_server(node, services, rate=0.1, env=env) as api:
            up_s = time.monotonic() - restarted
            pids = _tree(api.pid)
            pss_before = _pss(api.pid)
            cpu_before = (_cpu(pids), _cpu([redis_pid]))
            peak = pss_before
            probe = await apistack.HealthProbe.start(api, args.probe_rate)
            storm = time.monotonic()
            resumes = asyncio.gather(
                *(_resume(api, user, sid, cursor, want, args.timeout) for user, sid, cursor, want in plans)
            )
            while not resumes.done():
                peak = max(peak, _pss(api.pid))
                await asyncio.sleep(0.1)
            results = resumes.result()
            storm_s = time.monotonic() - storm
            during = await probe.stop()
            cpu_after = (_cpu(pids), _cpu([redis_pid]))
            read = await _metric(api, "wab_ws_resume_entries_total")
            replayed = await _metric(api, "wab_ws_resumes_total")
        bk.kill_actors("bench-resume")
    done = [r for r in results if isinstance(r, tuple)]
    failed: dict[str, int] = {}
    for r in results:
        if not isinstance(r, tuple):
            failed[str(r)] = failed.get(str(r), 0) + 1
    floor_ms, during_ms = floor.summary(args.floor_s)["ms"], during.summary(storm_s)["ms"]
    return {
        "users": args.users,
        "entries": args.entries,
        "missed_per_resume": args.missed,
        "api_start_s": round(up_s, 1),
        "storm_s": round(storm_s, 2),
        "resumed": len(done),
        "exact": sum(1 for _, ok in done if ok),
        "failed": failed,
        "resume_ms": bk.percentiles([t * 1000 for t, _ in done]),
        "health_floor_ms": floor_ms,
        "health_storm_ms": during_ms,
        "health_errors": during.errors,
        "p99_ratio": round(during_ms["p99"] / floor_ms["p99"], 2)
        if floor_ms["p99"] and during_ms["p99"]
        else None,
        "entries_read_per_resume": round(read / max(1, replayed), 1),
        "shared_log_entries_after_cursor_per_resume": round(sum(shared_reads) / len(shared_reads), 1),
        "api_pss_mib": {"before": round(pss_before, 1), "peak": round(peak, 1)},
        "cpu_ms_per_resume": {
            "api": round((cpu_after[0] - cpu_before[0]) * 1000 / len(results), 2),
            "redis": round((cpu_after[1] - cpu_before[1]) * 1000 / len(results), 2),
        },
    }


def report(out: dict[str, Any]) -> None:
    h, f, r = out["health_storm_ms"], out["health_floor_ms"], out["resume_ms"]
    bk.print_table(
        f"{out['users']} WebSockets resuming after an API restart ({out['entries']} entries logged, "
        f"{out['missed_per_resume']} missed each)",
        ["figure", "value"],
        [
            [
                "resumed / exactly their frames",
                f"{out['resumed']} / {out['exact']} (failed: {out['failed']})",
            ],
            ["resume to last frame p50 / p99 / max (ms)", f"{r['p50']} / {r['p99']} / {r['max']}"],
            ["/health p50 / p99 quiet (floor, ms)", f"{f['p50']} / {f['p99']}"],
            ["/health p50 / p99 during the storm (ms)", f"{h['p50']} / {h['p99']} (x{out['p99_ratio']})"],
            ["entries read per resume", out["entries_read_per_resume"]],
            ["shared-log entries after each cursor", out["shared_log_entries_after_cursor_per_resume"]],
            ["API PSS before / peak (MiB)", f"{out['api_pss_mib']['before']} / {out['api_pss_mib']['peak']}"],
            [
                "CPU per socket, resumed or refused: API / Redis (ms)",
                f"{out['cpu_ms_per_resume']['api']} / {out['cpu_ms_per_resume']['redis']}",
            ],
        ],
    )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench_resume", description=__doc__.split("\n")[0])
    p.add_argument("--users", type=int, default=1000, help="WebSockets (one user, one session each)")
    p.add_argument("--entries", type=int, default=100_000, help="entries in the event log")
    p.add_argument("--missed", type=int, default=20, help="frames each socket missed")
    p.add_argument("--probe-rate", type=float, default=20.0, help="/health requests per second")
    p.add_argument("--floor-s", type=float, default=10.0, help="/health measured quiet for this long")
    p.add_argument("--timeout", type=float, default=120.0, help="per resume")
    return p


def main(argv: Sequence[str] | None = None) -> None:
    bk.run_benchmark("resume", parser().parse_args(argv), run, report)


if __name__ == "__main__":
    main()
