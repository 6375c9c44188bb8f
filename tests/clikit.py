"""Running the real `whatsapp-bridge` command in tests: the command line, a clean environment, a stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from kernel.settings import Settings


def command() -> list[str]:
    script = Path(sys.executable).with_name("whatsapp-bridge")
    return [str(script)] if script.exists() else [sys.executable, "-m", "api.cli"]


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without anything the bridge or Ray would read."""
    ours = {name.upper() for name in Settings.model_fields}
    foreign = ("RAY_", "PG", "TEST_")
    env = {k: v for k, v in os.environ.items() if k.upper() not in ours and not k.startswith(foreign)}
    return {**env, **extra}


def interrupt(proc: subprocess.Popen[Any], timeout: float) -> None:
    """Ctrl+C a process that still runs and wait for it; kill it if it has not stopped within `timeout`."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
