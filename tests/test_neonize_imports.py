"""What a session process with the neonize adapter imports: nothing it never runs (memory per session)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

# Imported in a fresh interpreter as a session's process does: the adapter, then neonize itself.
_PROBE = """
import json, sys
import actors.actor
from actors.clients.neonize import NeonizeClient, runtime
runtime.load()
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})))
"""


def test_a_neonize_session_never_imports_httpx_command_line_client() -> None:
    # httpx's CLI brings rich, click and pygments: ~4 MiB of private memory in every session process.
    env = {**os.environ, "NEONIZE_BOT_TAG": "off"}
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=120, check=True
    )
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert "neonize" in loaded and "httpx" in loaded
    assert not loaded & {"rich", "click", "pygments"}
