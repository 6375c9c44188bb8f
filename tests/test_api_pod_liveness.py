"""The API container lives only as long as its Ray node (issue 19, item 2).

deploy/entrypoint.sh joins the cluster as a node of the container and runs the API as a driver on it.
Once that node's raylet is gone the driver can never reconnect, so the entrypoint must end the container
(non-zero, so Kubernetes or Compose restarts it with a fresh node) instead of leaving an API that
answers 503 for ever behind a green /health. And a SIGTERM must still stop the API gracefully, then the
node, leaving nothing behind.

As in tests/test_api_outside_cluster.py, one machine stands in for two: a Ray head started here, and an
"API container" with a process namespace of its own (`unshare --pid`), so the driver sees only the
raylet its entrypoint starts. Inside, a stand-in for the image's tini runs the entrypoint, writes its
exit code to the log and stays up (`exec sleep`), so the test can check what the entrypoint itself
left running before the namespace is torn down.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

from tests.test_api_outside_cluster import (
    ENTRYPOINT,
    HOST,
    api_env,
    free_port,
    nodes,
    started_head,
)

pytestmark = [
    pytest.mark.ray,
    pytest.mark.cluster,
    pytest.mark.own_ray,
]

# How long the container may take, once its raylet is gone, to exit: `ray start --block` notices within
# ~1 s, the entrypoint within 1 s more, and the API gets API_STOP_S to stop.
API_STOP_S = 10
EXIT_BOUND_S = API_STOP_S + 20
WORKERS_GONE_S = 10.0  # an idle Ray worker exits on its own this soon after its raylet
EXIT_LINE = re.compile(r"^entrypoint exit code: (\d+)$", re.MULTILINE)


@pytest.fixture(scope="module")
def ray_head() -> Iterator[tuple[str, str]]:
    with started_head(sessions=2, object_store_bytes=80_000_000) as head:
        yield head


@dataclass
class Container:
    """The entrypoint in a PID namespace of its own, under a tini stand-in that outlives it."""

    proc: subprocess.Popen[bytes]
    log: Path
    base: str

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def init(self) -> psutil.Process:
        """The namespace's PID 1 (the tini stand-in, then `sleep`)."""
        (first,) = psutil.Process(self.proc.pid).children()
        return first

    def entrypoint(self) -> psutil.Process:
        """The process the tini stand-in started (the entrypoint, or what it exec'd)."""
        (found,) = self.init().children()
        return found

    def leftovers(self) -> list[str]:
        """What still runs in the namespace besides its PID 1 (zombies are dead: nobody reaps them)."""
        found = []
        for proc in self.init().children(recursive=True):
            try:
                if proc.status() != psutil.STATUS_ZOMBIE:
                    found.append(f"{proc.pid} {' '.join(proc.cmdline())[:120]}")
            except psutil.NoSuchProcess:
                pass
        return found

    def exit_code(self, timeout: float) -> int:
        """The entrypoint's exit code, once it has exited (at most `timeout` s from now)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if found := EXIT_LINE.search(self.text()):
                return int(found.group(1))
            assert self.proc.poll() is None, f"the container ended early:\n{self.text()[-4000:]}"
            time.sleep(0.2)
        pytest.fail(f"the entrypoint has not exited within {timeout} s:\n{self.text()[-4000:]}")

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert not EXIT_LINE.search(self.text()), f"the entrypoint exited:\n{self.text()[-4000:]}"
            try:
                health = httpx.get(f"{self.base}/health", timeout=5)
                if health.status_code == 200 and health.json()["components"]["ray"] == "ok":
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        pytest.fail(f"no healthy /health within {timeout} s:\n{self.text()[-4000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)  # --kill-child: PID 1, and so the whole namespace
        self.proc.wait(timeout=30)


@pytest.fixture
def container(
    ray_head: tuple[str, str], database_url: str, redis_url: str, tmp_path: Path
) -> Iterator[Container]:
    address, token = ray_head
    port = free_port()
    env = {
        **api_env(address, token, database_url, redis_url, port),
        "WHATSAPP_BRIDGE_STOP_TIMEOUT_S": str(API_STOP_S),
    }
    log = tmp_path / "container.log"
    tini = '"$@"; echo "entrypoint exit code: $?" >&2; exec sleep 600'
    # Not root: a user namespace of its own, where this user is root (unprivileged user namespaces).
    user = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
    command = ["unshare", *user, "--pid", "--fork", "--mount-proc", "--kill-child", "sh", "-c", tini, "tini"]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*command, str(ENTRYPOINT)], env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out
        )
    running = Container(proc, log, f"http://{HOST}:{port}")
    try:
        running.wait_healthy(timeout=150)
        yield running
    finally:
        running.stop()


# Runs first: the next test kills a node without a word, and Ray's default health checks (this head's)
# list that node as alive for ~30 s more, which this test's count of live nodes would see.
def test_sigterm_stops_the_api_gracefully_then_the_node(
    container: Container, ray_head: tuple[str, str]
) -> None:
    os.kill(container.entrypoint().pid, signal.SIGTERM)

    code = container.exit_code(timeout=API_STOP_S + 20)
    text = container.text()
    assert code == 0, text[-4000:]
    # The API ran its own stop (api/cli.py logs it once everything it started is closed), then the node.
    assert re.search(r"whatsapp-bridge|api\.cli", text) and "stopped in" in text, text[-4000:]
    assert "the API stopped (TERM, exit 0); stopping the Ray node" in text
    assert not container.leftovers(), (container.leftovers(), text[-3000:])
    # The node left the cluster on its way out: only the head is alive, with no health-check timeout
    # to wait for.
    address, token = ray_head
    assert len(nodes(address, token)) == 1


def test_the_container_exits_when_its_ray_node_dies(container: Container) -> None:
    # The node the entrypoint started: the namespace's only raylet (the head's runs outside it).
    (raylet,) = [p for p in container.init().children(recursive=True) if p.name() == "raylet"]
    raylet.kill()
    killed = time.monotonic()

    code = container.exit_code(timeout=EXIT_BOUND_S)
    took = time.monotonic() - killed
    assert code != 0, container.text()[-4000:]
    assert took < EXIT_BOUND_S
    assert "the Ray node of this container exited" in container.text()
    # The rest of the node and the API went with it, before the container's PID 1 had to clean up (an
    # idle Ray worker notices its raylet is gone a moment later, on its own).
    deadline = time.monotonic() + WORKERS_GONE_S
    while container.leftovers() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not container.leftovers(), (container.leftovers(), container.text()[-3000:])
