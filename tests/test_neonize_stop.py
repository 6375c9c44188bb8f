"""What Go hands over while the neonize client stops is kept: real neonize 0.5.2 event protobufs through
neonize's own dispatcher, around a real `stop()` of a real Go client (in a child process, since stopping
calls into Go; WhatsApp is a dead end here, so the dial fails and Go's client is stopped after it).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from persistence.migrate import auth_dsn
from tests.conftest import DeadEndProxy

ROOT = Path(__file__).resolve().parents[1]
CHILD_TIMEOUT_S = 90.0

CHILD = textwrap.dedent(
    """
    import asyncio, json, logging, sys
    dsn, out_path, log_path = sys.argv[1:4]
    logging.basicConfig(filename=log_path, level=logging.INFO, format="%(name)s %(levelname)s %(message)s")

    async def main():
        from actors.clients.neonize import NeonizeClient
        from kernel.events import MessageReceived
        from actors.ports import ClientOptions
        from tests import neonize_events as nev

        def message(id):
            alice = nev.jid("15551230001")
            text = nev.wa(conversation=id)
            return nev.message_event(text, chat=alice, sender=alice, id=id, timestamp_ms=1_700_000_000_000)

        client = NeonizeClient(ClientOptions(session_id="child-stop", device_jid=None, auth_dsn=dsn))
        events = aiter(client.events())
        await client.connect()
        first = await asyncio.wait_for(anext(events), 30)
        # Go has acknowledged these to WhatsApp and handed them to neonize; their callbacks run on the
        # loop once it turns, which is during the stop.
        for i in range(3):
            nev.dispatch(client, message(f"DURING-{i}"))
        await client.stop()
        rest = []
        async def read():
            async for event in events:
                rest.append(event.message.id if isinstance(event, MessageReceived) else repr(event))
        await asyncio.wait_for(read(), 10)
        with open(out_path, "w") as f:
            json.dump({"first": repr(first), "rest": rest}, f)

    asyncio.run(main())
    """
)


def run_child(tmp_path: Path, dsn: str) -> tuple[dict[str, Any], str]:
    out, log = tmp_path / "stop.json", tmp_path / "stop.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [sys.executable, "-c", CHILD, dsn, str(out), str(log)]
    proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, timeout=CHILD_TIMEOUT_S, check=False)
    logs = log.read_text() if log.exists() else ""
    stderr = proc.stderr.decode()[-3000:]
    assert proc.returncode == 0, f"child exited {proc.returncode}\n{stderr}\n{logs[-3000:]}"
    return json.loads(out.read_text()), logs


async def test_messages_handed_over_during_a_stop_come_out_before_the_events_end(
    tmp_path: Path, database_url: str, no_route_to_whatsapp: DeadEndProxy
) -> None:
    out, logs = await asyncio.to_thread(run_child, tmp_path, auth_dsn(database_url))

    assert "Disconnected" in out["first"]  # the dial reached the dead end: Go's client existed
    assert "session child-stop: client stopped\n" in logs  # ... and Go's stop ran and returned
    assert out["rest"] == ["DURING-0", "DURING-1", "DURING-2"]
