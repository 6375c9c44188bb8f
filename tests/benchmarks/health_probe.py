"""`GET <url>` at a steady rate from a process of its own, until its stdin closes; then one JSON line on
stdout: the latencies (s) of the answers and the errors by kind.

    python -m tests.benchmarks.health_probe http://127.0.0.1:8000/health 20

A benchmark that loads the API from its own event loop (1,000 WebSocket clients) would otherwise time
its probes on that same busy loop, and count its own delays as the API's.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import httpx

from tests.benchmarks.apistack import Latencies, timed


async def main(url: str, rate: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    closed = loop.run_in_executor(None, sys.stdin.read)  # returns when the parent closes our stdin
    lat = Latencies()
    tasks: set[asyncio.Task[bool]] = set()
    limits = httpx.Limits(max_connections=20, max_keepalive_connections=20)
    async with httpx.AsyncClient(limits=limits, timeout=60.0) as client:
        started, i = time.monotonic(), 0
        while not closed.done():
            if (wait := started + i / rate - time.monotonic()) > 0:
                await asyncio.sleep(wait)
            task = asyncio.create_task(timed(client, "GET", url, lat))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            i += 1
        await asyncio.gather(*tasks, return_exceptions=True)
    return {"ok": lat.ok, "errors": lat.errors}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1], float(sys.argv[2])))), flush=True)
