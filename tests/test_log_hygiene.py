"""What an operator reads on the API's console when session processes end (issue 12, item 6).

A driver process like the API (`ray.init(..., log_to_driver=False)`, the registry's way of creating
session actors) runs in a subprocess whose whole output is captured: a planned recycle (a pairing
round over) must not print Ray's "A worker died or was killed ... OOM killer ... SIGSEGV" warning,
while a session process killed with SIGKILL still shows, once, a line naming its session id.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.raykit import insert_session

pytestmark = pytest.mark.ray

REPO = Path(__file__).resolve().parents[1]
RAY_CRASH_WARNING = "A worker died or was killed"

# The driver: the API's ray.init, a session actor made as the registry makes it, on the simulated
# network with scaled-down QR rounds (2.3 s; two rounds, so the first one ends in a recycle).
DRIVER = textwrap.dedent(
    """
    import os, signal, sys, time
    import ray
    from actors.registry import create_session_actor
    from tests.raykit import registry_config

    database_url, redis_url, sid, namespace = sys.argv[1:5]
    ray.init(address="local", num_cpus=1, resources={"wa_session": 4}, include_dashboard=False,
             _node_ip_address="127.0.0.1", object_store_memory=80 * 1024 * 1024,
             namespace=namespace, configure_logging=False, log_to_driver=False)
    config = registry_config(database_url, redis_url, namespace)
    actor = create_session_actor(config, sid)

    def pid_after(old, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                pid = ray.get(actor.ping.remote(), timeout=5).pid
                if pid != old:
                    return pid
            except Exception:
                pass
            time.sleep(0.2)
        raise SystemExit(f"no new process after {timeout} s")

    first = pid_after(None, 60)
    second = pid_after(first, 60)  # the first pairing round ended unscanned: a planned recycle
    print(f"RECYCLED {first} -> {second}", flush=True)
    time.sleep(4)  # room for any warning about the planned exit to arrive
    print("KILLING", flush=True)
    os.kill(second, signal.SIGKILL)
    third = pid_after(second, 60)
    print(f"RESTARTED {second} -> {third}", flush=True)
    time.sleep(4)
    print("DONE", flush=True)
    ray.kill(actor, no_restart=True)
    ray.shutdown()
    """
)


async def test_planned_recycle_is_quiet_and_a_crash_names_its_session(
    database_url: str, redis_url: str
) -> None:
    sid = await insert_session(database_url)
    env = {**os.environ, "RAY_DEDUP_LOGS": "0", "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        DRIVER,
        database_url,
        redis_url,
        sid,
        f"hygiene-{sid[:8]}",
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 240)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    stdout, stderr = out.decode(), err.decode()
    console = stdout + stderr
    assert proc.returncode == 0, console[-3000:]
    before_kill, _, after_kill = stdout.partition("KILLING")
    assert "RECYCLED" in before_kill and "DONE" in after_kill, console[-3000:]

    # Ray prints its warnings on the driver's stdout: none for the planned recycle...
    assert RAY_CRASH_WARNING not in before_kill, before_kill
    assert "ended unexpectedly" not in before_kill, before_kill
    # ...and, over the whole run, stdout and stderr, only the one for the SIGKILL.
    assert console.count(RAY_CRASH_WARNING) == 1, console[-3000:]

    # The SIGKILL shows once, in words, with the session id.
    named = [line for line in console.splitlines() if sid in line and "ended unexpectedly" in line]
    assert len(named) == 1, console[-3000:]
    assert named[0] in after_kill
