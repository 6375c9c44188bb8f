"""Benchmark 11: what logging an event and resuming a WebSocket cost, before and after the index by
session (issue 24), side by side on a private Valkey, in CPU time (not distorted by a loaded machine).

    .venv/bin/python -m tests.benchmarks.bench_eventlog [--events 20000] [--entries 100000] [--sessions 1000]

1. Logging, one event per round trip as a session sends it: before, `XADD` to the shared log + `PUBLISH`
   pipelined; after, `kernel.event_index.APPEND` (`EVALSHA`: shared log, the session's index, PUBLISH).
   Valkey's CPU and this process's CPU per event.
2. Resuming: `--entries` entries round-robin over `--sessions` sessions; `--resumes` resumes of one
   session each, `--missed` frames missed. Before: the shared log read from the cursor (as the API did
   until issue 24: pages of 1,000, every entry decoded, other users' skipped, the frames buffered);
   after: `api.hub_replay.Replays` (the user's index streams, a page at a time, frames as read). Entries
   read, Valkey's and this process's CPU, and the peak of Python memory (tracemalloc) per resume.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import tracemalloc
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil
from redis.asyncio import Redis

from actors.publisher import LoggedEvent, Publisher, _command
from api import eventlog
from api.hub_replay import Replays
from api.local_valkey import EmbeddedValkey
from api.metrics import Metrics
from api.subscribers import FRAME_TYPES, Subscriber, frame_text
from kernel.event_index import session_index
from kernel.wire import EVENTS_RETAINED, EVENTS_STREAM, channel, event_fields
from tests.benchmarks import benchkit as bk

BODY_PAD = "x" * 300


def _event(n: int, sid: str) -> tuple[str, list[str]]:
    body = json.dumps({"chatId": "c@s.whatsapp.net", "message": {"n": n, "text": BODY_PAD}})
    return body, event_fields(sid, "msg", body, sid[:12], n + 1)


class _Cpu:
    def __init__(self, server: psutil.Process) -> None:
        self._server = server

    def __enter__(self) -> _Cpu:
        self._s0, self._c0 = sum(self._server.cpu_times()[:2]), time.process_time()
        return self

    def __exit__(self, *_: object) -> None:
        self.server = sum(self._server.cpu_times()[:2]) - self._s0
        self.client = time.process_time() - self._c0


async def _log_before(url: str, events: int, sid: str) -> None:
    """What the session's publisher sent until issue 24: XADD and PUBLISH pipelined, one event a write."""
    publisher = Publisher(url)
    try:
        for n in range(events):
            body, fields = _event(n, sid)
            command = _command("XADD", EVENTS_STREAM, "MAXLEN", "~", str(EVENTS_RETAINED), "*", *fields)
            await publisher._call(command + _command("PUBLISH", channel("msg", sid), body), 2)
    finally:
        await publisher.aclose()


async def _log_after(url: str, events: int, sid: str) -> None:
    publisher = Publisher(url)
    try:
        for n in range(events):
            body, fields = _event(n, sid)
            await publisher.publish_logged(
                EVENTS_STREAM,
                EVENTS_RETAINED,
                [LoggedEvent(channel("msg", sid), body, fields, session_index(sid))],
            )
    finally:
        await publisher.aclose()


async def _resume_before(redis: Redis, sub: Subscriber, cursor: str, sid: str) -> tuple[int, int]:
    """The API's replay until issue 24: the shared log from the cursor, every entry decoded."""
    frames: list[str] = []
    read = 0
    low = f"({cursor}"
    while True:
        page: Any = await redis.xrange(EVENTS_STREAM, min=low, max=sub.start, count=1000)
        read += len(page)
        for entry_id, fields in page:
            entry = eventlog.decode(entry_id, fields)
            if entry.session_id == sid:
                frames.append(
                    frame_text(FRAME_TYPES[entry.kind], entry.session_id, entry.payload, cursor=entry.id)
                )
        if len(page) < 1000:
            return read, len(frames)
        low = f"({page[-1][0].decode()}"


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory(prefix="wab-bench-eventlog-") as folder,
        EmbeddedValkey(Path(folder)) as valkey,
    ):
        server = next(
            p
            for p in psutil.process_iter(["cmdline"])
            if str(valkey.port) in " ".join(p.info["cmdline"] or [])
        )
        redis = Redis.from_url(valkey.url)
        out: dict[str, Any] = {"events": args.events}
        for name, log in (
            ("before", lambda: _log_before(valkey.url, args.events, "s-before")),
            ("after", lambda: _log_after(valkey.url, args.events, "s-after")),
        ):
            await redis.flushdb()
            with _Cpu(server) as cpu:
                await log()
            out[f"log_{name}_us_per_event"] = {
                "valkey": round(cpu.server * 1e6 / args.events, 1),
                "client": round(cpu.client * 1e6 / args.events, 1),
            }
        await redis.flushdb()
        sids = [f"{n:08d}-0000-4000-8000-000000000000" for n in range(args.sessions)]
        ids: dict[str, list[str]] = {sid: [] for sid in sids}
        publisher = Publisher(valkey.url, timeout_s=30)
        for start in range(0, args.entries, 1000):
            batch = []
            for n in range(start, min(args.entries, start + 1000)):
                sid = sids[n % len(sids)]
                body, fields = _event(n, sid)
                batch.append((sid, LoggedEvent(channel("msg", sid), body, fields, session_index(sid))))
            for (sid, _), entry_id in zip(
                batch,
                await publisher.publish_logged(EVENTS_STREAM, EVENTS_RETAINED, [e for _, e in batch]),
                strict=True,
            ):
                ids[sid].append(entry_id)
        await publisher.aclose()
        end = await eventlog.last_id(redis)
        plans = [(sid, ids[sid][-args.missed - 1]) for sid in sids[: args.resumes]]
        metrics = Metrics()
        replays = Replays(lambda: redis, lambda _: False, metrics)

        async def after(sid: str, cursor: str) -> tuple[int, int]:
            before_read = metrics.ws_resume_entries._value.get()
            sent = 0
            async for _ in replays.frames(Subscriber(sid, None, end), cursor, [sid]):
                sent += 1
            return int(metrics.ws_resume_entries._value.get() - before_read), sent

        for name, resume in (
            ("before", lambda sid, c: _resume_before(redis, Subscriber(sid, None, end), c, sid)),
            ("after", after),
        ):
            read = sent = 0
            peaks = []
            with _Cpu(server) as cpu:
                for sid, cursor in plans:
                    tracemalloc.start()
                    got = await resume(sid, cursor)
                    peaks.append(tracemalloc.get_traced_memory()[1])
                    tracemalloc.stop()
                    read += got[0]
                    sent += got[1]
            out[f"resume_{name}"] = {
                "entries_read": round(read / len(plans), 1),
                "frames": round(sent / len(plans), 1),
                "valkey_ms": round(cpu.server * 1000 / len(plans), 3),
                "client_ms": round(cpu.client * 1000 / len(plans), 3),
                "peak_python_kib": round(max(peaks) / 1024, 1),
            }
        out["redis_memory_mib"] = round(int((await redis.info("memory"))["used_memory"]) / 2**20, 1)
        await redis.aclose()
    return {
        **out,
        "entries": args.entries,
        "sessions": args.sessions,
        "resumes": args.resumes,
        "missed": args.missed,
    }


def report(out: dict[str, Any]) -> None:
    b, a = out["log_before_us_per_event"], out["log_after_us_per_event"]
    rb, ra = out["resume_before"], out["resume_after"]
    bk.print_table(
        f"Event log: {out['events']} events logged; {out['resumes']} resumes of {out['missed']} frames in "
        f"{out['entries']} entries over {out['sessions']} sessions (CPU per event / per resume)",
        ["figure", "before (shared log only)", "after (index by session)", "after / before"],
        [
            ["log: Valkey µs / event", b["valkey"], a["valkey"], round(a["valkey"] / b["valkey"], 2)],
            ["log: client µs / event", b["client"], a["client"], round(a["client"] / b["client"], 2)],
            [
                "resume: entries read",
                rb["entries_read"],
                ra["entries_read"],
                round(ra["entries_read"] / rb["entries_read"], 4),
            ],
            ["resume: frames", rb["frames"], ra["frames"], ""],
            [
                "resume: Valkey ms",
                rb["valkey_ms"],
                ra["valkey_ms"],
                round(ra["valkey_ms"] / max(rb["valkey_ms"], 1e-9), 4),
            ],
            [
                "resume: API-side ms",
                rb["client_ms"],
                ra["client_ms"],
                round(ra["client_ms"] / max(rb["client_ms"], 1e-9), 4),
            ],
            [
                "resume: peak Python KiB",
                rb["peak_python_kib"],
                ra["peak_python_kib"],
                round(ra["peak_python_kib"] / rb["peak_python_kib"], 3),
            ],
        ],
    )
    print(f"Valkey memory with the log and its index: {out['redis_memory_mib']} MiB")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench_eventlog", description=__doc__.split("\n")[0])
    p.add_argument("--events", type=int, default=20_000)
    p.add_argument("--entries", type=int, default=100_000)
    p.add_argument("--sessions", type=int, default=1000)
    p.add_argument("--resumes", type=int, default=50)
    p.add_argument("--missed", type=int, default=20)
    return p


def main(argv: Sequence[str] | None = None) -> None:
    bk.run_benchmark("eventlog", parser().parse_args(argv), run, report)


if __name__ == "__main__":
    main()
