"""Benchmark 9: events → webhook receivers. N webhooks over M sessions at a given event rate: delivery
latency from the event's append to the log to its arrival at the receiver, CPU per delivery, none lost;
then the same with one receiver taking 10 s per request: the other webhooks' p99.

    .venv/bin/python -m tests.benchmarks.bench_webhooks [--webhooks 100] [--sessions 200] [--rate 1000]

The dispatcher runs as in production: the detached Ray actor (`actors.webhook_actor`) on a local Ray,
PostgreSQL and Redis as configured. Each webhook belongs to its own user, who owns M/N of the sessions,
so each event goes to exactly one webhook. Events are appended to `wa:events` exactly as the sessions'
bus does (open loop at `--rate`/s, round-robin over the sessions), each carrying its send time; receivers
are aiohttp servers in this process (one port per webhook). Latency runs from the append to the request's
arrival; an event not received within `--drain-s` after the run counts as lost. CPU per delivery is the
dispatcher processes' CPU time over the deliveries they made (PostgreSQL's and Redis's share not counted:
the machine's database is shared). Full size: about 3 min.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg
import psutil
from aiohttp import web
from redis.asyncio import Redis

from api.localstack import free_port
from kernel.wire import EVENTS_STREAM, event_fields
from tests.benchmarks import benchkit as bk

SLOW_S = 10.0


class Receivers:
    """One aiohttp site per webhook; webhook 0 can be made slow."""

    def __init__(self, count: int) -> None:
        self.ports = [free_port() for _ in range(count)]
        self.latencies: dict[int, list[float]] = {i: [] for i in range(count)}
        self.seen: set[str] = set()
        self.duplicates = 0
        self.last_arrival = 0.0
        self.slow = False
        self._runners: list[web.AppRunner] = []

    def url(self, index: int) -> str:
        return f"http://127.0.0.1:{self.ports[index]}/hook"

    async def start(self) -> None:
        for index, port in enumerate(self.ports):
            app = web.Application()
            app.router.add_post("/hook", self._handler(index))
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            self._runners.append(runner)

    def _handler(self, index: int) -> Any:
        async def handle(request: web.Request) -> web.Response:
            frame = json.loads(await request.read())
            now = time.time()
            if request.headers["webhook-id"] in self.seen:
                self.duplicates += 1
            else:
                self.seen.add(request.headers["webhook-id"])
                self.latencies[index].append(now - float(frame["t"]))
                self.last_arrival = now
            if index == 0 and self.slow:
                await asyncio.sleep(SLOW_S)
            return web.Response(status=204)

        return handle

    async def stop(self) -> None:
        for runner in self._runners:
            await runner.cleanup()


async def setup_rows(
    services: bk.Services, webhooks: int, sessions: int, receivers: Receivers
) -> tuple[list[str], list[int]]:
    """Sessions and the index of each one's owner, with one webhook per owner."""
    conn = await asyncpg.connect(services.database_url, timeout=10)
    owners = [i % webhooks for i in range(sessions)]
    sids = [str(uuid.uuid4()) for _ in range(sessions)]
    try:
        await conn.executemany(
            "INSERT INTO whatsapp_session (id, user_id, slot, status) VALUES ($1::uuid, $2, $3, 'connected')",
            [(sid, f"hook-user-{owners[i]}", 1 + i // webhooks) for i, sid in enumerate(sids)],
        )
        await conn.executemany(
            "INSERT INTO webhook (id, user_id, url, secret) VALUES (gen_random_uuid(), $1, $2, $3)",
            [(f"hook-user-{j}", receivers.url(j), "whsec_" + "QUJD" * 8) for j in range(webhooks)],
        )
    finally:
        await conn.close()
    return sids, owners


async def emit(redis: Redis, sids: list[str], rate: float, duration: float, start_index: int) -> int:
    """Append events at `rate`/s for `duration` s, round-robin over the sessions; how many."""
    producer = uuid.uuid4().hex
    started = time.monotonic()
    sent = 0
    while (elapsed := time.monotonic() - started) < duration:
        due = int(elapsed * rate) + 1
        pipe = redis.pipeline(transaction=False)
        while sent < due:
            sid = sids[(start_index + sent) % len(sids)]
            payload = {"chatId": "1555@s.whatsapp.net", "message": {"text": f"e{sent}"}, "t": time.time()}
            body = json.dumps(payload)
            fields = event_fields(sid, "msg", body, producer, start_index + sent + 1)
            pipe.xadd(EVENTS_STREAM, dict(zip(fields[::2], fields[1::2], strict=True)))
            sent += 1
        await pipe.execute()
        await asyncio.sleep(0.01)
    return sent


async def phase(
    name: str,
    args: argparse.Namespace,
    redis: Redis,
    receivers: Receivers,
    rows: tuple[list[str], list[int]],
    procs: list[Any],
    start: int,
) -> dict[str, Any]:
    sids, owners = rows
    for values in receivers.latencies.values():
        values.clear()
    cpu_before = sum(sum(p.cpu_times()[:2]) for p in procs)
    began = time.time()
    sent = await emit(redis, sids, args.rate, args.duration, start)
    counted = [i for i in range(args.webhooks) if not (receivers.slow and i == 0)]
    per_webhook = [0] * args.webhooks
    for k in range(sent):
        per_webhook[owners[(start + k) % len(owners)]] += 1
    expected = sum(per_webhook[i] for i in counted)
    for _ in range(int(args.drain_s / 0.2)):
        if sum(len(receivers.latencies[i]) for i in counted) >= expected:
            break
        await asyncio.sleep(0.2)
    cpu = sum(sum(p.cpu_times()[:2]) for p in procs) - cpu_before
    got = [x * 1000 for i in counted for x in receivers.latencies[i]]
    delivered_all = sum(len(v) for v in receivers.latencies.values())
    return {
        "phase": name,
        "events": sent,
        "expected": expected,
        "delivered": len(got),
        "lost": expected - len(got),
        "latency_ms": bk.percentiles(got),
        # What the dispatchers kept up with: deliveries from the first event to the last arrival.
        "delivered_per_s": round(len(got) / max(receivers.last_arrival - began, 1e-9), 1),
        "dispatcher_cpu_ms_per_delivery": round(cpu * 1000 / max(delivered_all, 1), 3),
        "slow_webhook_delivered": len(receivers.latencies[0]) if receivers.slow else None,
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    import ray

    from actors.webhook_actor import ensure_dispatcher
    from actors.webhook_ports import WebhookConfig
    from persistence.stores import PostgresStores

    services = bk.Services.from_env()
    await bk.reset(services)
    receivers = Receivers(args.webhooks)
    await receivers.start()
    rows = await setup_rows(services, args.webhooks, args.sessions, receivers)
    namespace = "bench-webhooks"
    redis = Redis.from_url(services.redis_url)
    results: list[dict[str, Any]] = []
    try:
        env = bk.parse_env(args.worker_env)
        with bk.local_ray(5, namespace=namespace, dashboard=args.dashboard, worker_env=env):
            config = WebhookConfig(
                services.database_url,
                services.redis_url,
                allow_private=True,
                backoff_max_s=1.0,
                timeout_s=SLOW_S + 5,
                stores=PostgresStores(),
                dispatchers=args.dispatchers,
            )
            handles = [ensure_dispatcher(config, namespace, i) for i in range(args.dispatchers)]
            procs = []
            for handle in handles:
                status: dict[str, Any] = await asyncio.wait_for(handle.ping.remote(), args.timeout)
                procs.append(psutil.Process(status["pid"]))
            results.append(await phase("all receivers fast", args, redis, receivers, rows, procs, 0))
            receivers.slow = True
            results.append(await phase("webhook 0 takes 10 s", args, redis, receivers, rows, procs, 10**6))
            for handle in handles:
                ray.kill(handle, no_restart=True)
            bk.kill_actors(namespace)
    finally:
        await redis.aclose()
        await receivers.stop()
    return {
        "webhooks": args.webhooks,
        "sessions": args.sessions,
        "rate_per_s": args.rate,
        "dispatchers": args.dispatchers,
        "duration_s": args.duration,
        "duplicates": receivers.duplicates,
        "phases": results,
    }


def report(out: dict[str, Any]) -> None:
    bk.print_table(
        f"Event → webhook receiver ({out['webhooks']} webhooks, {out['sessions']} sessions,"
        f" {out['rate_per_s']}/s for {out['duration_s']} s, {out['dispatchers']} dispatcher(s);"
        " ms; the slow webhook not counted)",
        [
            "phase",
            "events",
            "delivered",
            "lost",
            "p50",
            "p90",
            "p99",
            "max",
            "delivered/s",
            "CPU ms/delivery",
        ],
        [
            [
                p["phase"],
                p["events"],
                p["delivered"],
                p["lost"],
                p["latency_ms"]["p50"],
                p["latency_ms"]["p90"],
                p["latency_ms"]["p99"],
                p["latency_ms"]["max"],
                p["delivered_per_s"],
                p["dispatcher_cpu_ms_per_delivery"],
            ]
            for p in out["phases"]
        ],
    )
    print(f"duplicates received: {out['duplicates']}")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench_webhooks", description=__doc__.split("\n")[0])
    p.add_argument("--webhooks", type=int, default=100)
    p.add_argument("--sessions", type=int, default=200)
    p.add_argument("--rate", type=float, default=1000.0, help="events per second, all sessions together")
    p.add_argument("--duration", type=float, default=30.0)
    p.add_argument("--dispatchers", type=int, default=1, help="as WEBHOOK_DISPATCHERS")
    p.add_argument("--drain-s", type=float, default=60.0, help="how long to wait for the last deliveries")
    bk.ray_options(p, timeout_s=120.0)
    return p


def main(argv: Sequence[str] | None = None) -> None:
    bk.run_benchmark("webhooks", parser().parse_args(argv), run, report)


if __name__ == "__main__":
    main()
