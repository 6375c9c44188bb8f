"""Closed-loop send load from `wrk` (C, ~0.05 ms of CPU per request) instead of an httpx loop in Python
(~1.2 ms per request, a fifth of the 2 cores the service is measured on). `apt-get install wrk`.

Each connection sends, waits for the answer, sends again, rotating over the sessions (each as its
owner). wrk's Lua `done()` prints the totals and latency percentiles as one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import resource
import shutil
import tempfile
from pathlib import Path
from typing import Any

from tests.benchmarks.apistack import Api, user_of

SCRIPT = """
local sessions = {%(sessions)s}
local key = %(key)s
local counter = 0
local thread_id = 0
local next_id = 0

setup = function(thread)
  thread:set("thread_id", next_id)
  next_id = next_id + 1
end

request = function()
  counter = counter + 1
  local s = sessions[((counter * 7 + thread_id) %% #sessions) + 1]
  local headers = {["X-API-Key"] = key, ["X-User-Id"] = s[2]}
  if %(request)s == "status" then
    return wrk.format("GET", "/sessions/" .. s[1] .. "/status", headers)
  end
  headers["Content-Type"] = "application/json"
  if %(request)s == "typing" then
    local path = "/sessions/" .. s[1] .. "/chats/+15551230001/typing"
    return wrk.format("POST", path, headers, '{"state":"composing"}')
  end
  local body = '{"to":"+15551230001","text":"bench ' .. thread_id .. '-' .. counter .. '"}'
  return wrk.format("POST", "/sessions/" .. s[1] .. "/send/text", headers, body)
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%%d,"duration_us":%%d,"connect":%%d,"read":%%d,"write":%%d,"status":%%d,"timeout":%%d,' ..
    '"mean":%%f,"p50":%%d,"p90":%%d,"p99":%%d,"max":%%d}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


def available() -> bool:
    return shutil.which("wrk") is not None


def _lua_string(text: str) -> str:
    return json.dumps(text)  # a JSON string literal is a valid Lua string literal for these characters


REQUESTS = ("send", "status", "typing")


async def closed_loop(
    api: Api, sids: list[str], clients: int, seconds: float, *, request: str = "send"
) -> dict[str, Any]:
    """`clients` connections for `seconds`: the same summary as `apistack.Latencies.summary`, plus the
    CPU seconds wrk used. `request`: POST send/text; GET /sessions/{id}/status (a PostgreSQL read, no
    Ray); POST .../typing `composing` to one chat (an actor call that does nothing: coalesced)."""
    assert request in REQUESTS
    sessions = ", ".join(f"{{{_lua_string(sid)}, {_lua_string(user_of(k))}}}" for k, sid in enumerate(sids))
    with tempfile.TemporaryDirectory(prefix="wab-wrk-") as tmp:
        script = Path(tmp) / "send.lua"
        values = {
            "sessions": sessions,
            "key": _lua_string(api.api_key),
            "request": _lua_string(request),
        }
        script.write_text(SCRIPT % values)
        threads = min(2, clients)
        cmd = [
            "wrk",
            f"-t{threads}",
            f"-c{clients}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "30s",
            "-s",
            str(script),
        ]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        proc = await asyncio.create_subprocess_exec(
            *cmd, api.base_url, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await proc.communicate()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {err.decode(errors='replace')[-500:]}")
    line = next(x for x in reversed(out.decode().splitlines()) if x.startswith("{"))
    got = json.loads(line)
    errors = {k: got[k] for k in ("connect", "read", "write", "status", "timeout") if got[k]}
    ok = got["requests"] - got["status"]
    wall_s = got["duration_us"] / 1e6
    return {
        "requests": ok,
        "errors": errors,
        "per_s": round(ok / wall_s, 1) if wall_s else None,
        "ms": {
            "count": got["requests"],
            "mean": got["mean"] / 1000,
            **{q: got[q] / 1000 for q in ("p50", "p90", "p99", "max")},
        },
        "load_generator": "wrk",
        "load_generator_cpu_s": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
    }
