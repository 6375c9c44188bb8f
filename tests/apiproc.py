"""A `whatsapp-bridge` API process under test, driven over HTTP from synchronous test code.

Used by the tests that take the Ray head away from a running API (tests/test_head_restart.py,
tests/test_ray_reinit.py): every request must answer within `request_bound_s`, and the API must stay up.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from api.localstack import free_port
from tests.clikit import clean_env, command


@dataclass
class Api:
    proc: subprocess.Popen[bytes]
    base: str
    key: str
    log: Path
    user: str = "api-user"
    request_bound_s: float = 15.0

    def request(self, method: str, path: str, body: object = None) -> httpx.Response:
        headers = {"X-API-Key": self.key, "X-User-Id": self.user}
        started = time.monotonic()
        response = httpx.request(
            method, self.base + path, json=body, headers=headers, timeout=self.request_bound_s + 5
        )
        assert time.monotonic() - started < self.request_bound_s, f"{method} {path} took too long"
        return response

    def get(self, path: str) -> httpx.Response:
        return self.request("GET", path)

    def post(self, path: str, body: object) -> httpx.Response:
        return self.request("POST", path, body)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def until(self, what: str, check: Callable[[], bool], timeout: float = 60.0) -> float:
        """Seconds it took until `check()` held; the API must stay up all along."""
        started = time.monotonic()
        last: object = None
        while time.monotonic() - started < timeout:
            assert self.alive(), f"the API exited ({self.proc.returncode}):\n{self.log.read_text()[-3000:]}"
            try:
                if check():
                    return time.monotonic() - started
            except (httpx.HTTPError, KeyError) as err:
                last = err
            time.sleep(0.5)
        raise AssertionError(f"{what}: not within {timeout} s; last {last!r}\n{self.log.read_text()[-3000:]}")


def spawn(
    tmp_path: Path, env: dict[str, str], port: int, key: str, *, user: str, request_bound_s: float
) -> Api:
    """`whatsapp-bridge` started with `env` (its log in tmp_path/api.log), serving on `port`."""
    log = tmp_path / "api.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(command(), env=env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
    return Api(proc, f"http://127.0.0.1:{port}", key, log, user=user, request_bound_s=request_bound_s)


def spawn_cluster_api(
    tmp_path: Path,
    cluster_address: str,
    database_url: str,
    redis_url: str,
    namespace: str,
    *,
    user: str,
    request_bound_s: float,
    **env: str,
) -> Api:
    """`whatsapp-bridge` on the simulated network, a driver of the cluster at `cluster_address`, + `env`."""
    port = free_port()
    key = secrets.token_urlsafe(24)
    full = clean_env(
        RAY_ADDRESS=cluster_address,
        RAY_NAMESPACE=namespace,
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        WHATSAPP_BRIDGE_API_KEY=key,
        WHATSAPP_BRIDGE_PORT=str(port),
        WA_BACKEND="simulated",
        **env,
        # The cluster's authentication, as its drivers need it: once any test of this process has called
        # ray.init, Ray sets RAY_AUTH_MODE=token here, and the cluster requires a token.
        **{k: v for k, v in os.environ.items() if k.startswith("RAY_AUTH_")},
    )
    return spawn(tmp_path, full, port, key, user=user, request_bound_s=request_bound_s)
