"""Sessions drive the cluster's size: Ray's autoscaler on its fake multi-node provider (worker nodes are
real raylets started as local processes), a head without session capacity, workers of 4 `wa_session`.

`ray.cluster_utils.AutoscalingCluster` does not work as shipped (../shared/notes/ray.md: it reads a file
the wheel lacks, takes Redis's port and runs `ray stop --force`), so the head is started here by
`ray start --autoscaling-config` in its own process session, and only that session's processes are
stopped afterwards.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray

from actors import fleet
from actors.domain import SessionStatus
from actors.registry import start_registry
from api.local_ray import _kill_ray
from api.localproc import free_port
from tests.raykit import (
    eventually,
    handle,
    insert_session,
    kill_namespace_actors,
    registry_config,
    status_of,
    unique_namespace,
    wait_status,
)

pytestmark = [pytest.mark.ray, pytest.mark.cluster]

PER_WORKER = 4
MAX_WORKERS = 3
SESSIONS = 10
WORKER_TYPE = "wa.session.worker"
# Plenty for 2 busy cores: measured here, 3 nodes up and 10 bare actors placed in 16 s, idle nodes
# gone 15 s after their actors (notes/ray.md).
SCALE_UP_TIMEOUT_S = 240.0
SCALE_DOWN_TIMEOUT_S = 180.0


def cluster_config(gcs_address: str) -> dict[str, object]:
    return {
        "cluster_name": "wab-autoscaling-test",
        "max_workers": MAX_WORKERS,
        "upscaling_speed": 1.0,
        "idle_timeout_minutes": 0.1,
        "provider": {
            "type": "fake_multinode",
            "use_node_id_as_ip": True,
            "disable_node_updaters": True,
            "disable_launch_config_check": True,
            "gcs_address": gcs_address,
        },
        "head_node_type": "ray.head.default",
        "available_node_types": {
            "ray.head.default": {"resources": {"CPU": 0}, "node_config": {}, "max_workers": 0},
            WORKER_TYPE: {
                "resources": {"CPU": 0, "wa_session": PER_WORKER, "object_store_memory": 80 * 2**20},
                "node_config": {},
                "min_workers": 0,
                "max_workers": MAX_WORKERS,
            },
        },
        "auth": {"ssh_user": "ray"},
        "docker": {},
        "file_mounts": {},
        "cluster_synced_files": [],
        "file_mounts_sync_continuously": False,
        "rsync_exclude": [],
        "rsync_filter": [],
        "initialization_commands": [],
        "setup_commands": [],
        "head_setup_commands": [],
        "worker_setup_commands": [],
        "head_start_ray_commands": [],
        "worker_start_ray_commands": [],
    }


@pytest.fixture
def autoscaling_head(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A head that holds no session and an autoscaler that adds up to 3 workers; yields its address."""
    ip = ray._private.services.get_node_ip_address()
    address = f"{ip}:{free_port()}"
    config = tmp_path / "cluster.json"
    config.write_text(json.dumps(cluster_config(address)))
    ray_bin = Path(sys.executable).with_name("ray")
    temp_dir = tempfile.mkdtemp(prefix="wab-as-")  # short: Ray's socket paths must fit 107 bytes
    env = {
        **{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"},
        "AUTOSCALER_UPDATE_INTERVAL_S": "1",
        "RAY_FAKE_CLUSTER": "1",
        # No token: a driver that imported Ray before the head made its token cannot present it, and
        # the autoscaler's nodes would need it too. Local processes only, on a loopback-free test IP.
        "RAY_AUTH_MODE": "disabled",
        # Fixed defaults would collide with any other Ray on the machine.
        "AUTOSCALER_METRIC_PORT": str(free_port()),
        "DASHBOARD_METRIC_PORT": str(free_port()),
    }
    command = [
        str(ray_bin),
        "start",
        "--head",
        "--disable-usage-stats",
        f"--node-ip-address={ip}",
        f"--port={address.rpartition(':')[2]}",
        "--num-cpus=0",
        "--include-dashboard=false",
        f"--ray-client-server-port={free_port()}",
        f"--object-store-memory={80 * 2**20}",
        f"--autoscaling-config={config}",
        f"--temp-dir={temp_dir}",
    ]
    with (tmp_path / "ray-start.log").open("w") as out:
        # Its own process session: what it starts, the autoscaler's worker nodes included, is found
        # (and stopped) by session id, never by name.
        proc = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        assert proc.wait(timeout=120) == 0, (tmp_path / "ray-start.log").read_text()[-3000:]
        monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
        ray.init(address=address, logging_level="WARNING", configure_logging=False)
        yield address
    finally:
        ray.shutdown()
        _kill_ray(proc.pid)
        shutil.rmtree(temp_dir, ignore_errors=True)


async def _pair(sid: str, namespace: str, phone: str) -> None:
    """Scan its QR once Ray has placed it (that waits for a node), then wait for `connected`."""
    await wait_status(sid, namespace, SessionStatus.QR_READY, timeout=SCALE_UP_TIMEOUT_S)
    await handle(sid, namespace).simulate.remote("scan", {"phone": phone, "display_name": "Tester"})
    await wait_status(sid, namespace, SessionStatus.CONNECTED, timeout=60)


def _worker_nodes() -> list[fleet.Node]:
    return [n for n in fleet.nodes() if n.alive and not n.is_head]


async def test_sessions_add_worker_nodes_and_idle_ones_go_away(
    autoscaling_head: str, database_url: str, redis_url: str
) -> None:
    namespace = unique_namespace()
    try:
        assert _worker_nodes() == [], "no worker before any session"
        sids = [await insert_session(database_url, f"as{i}") for i in range(SESSIONS)]
        started = time.monotonic()
        registry = start_registry(
            registry_config(database_url, redis_url, namespace, session={"qr_first_s": 300.0})
        )
        # Nothing can run on the head: every session waits for capacity, and the registry says so.
        pending = await eventually(registry.pending.remote, lambda p: p.count >= PER_WORKER, timeout=60)
        first_pending = time.monotonic()
        await asyncio.gather(*(_pair(sid, namespace, f"+155513{i:05d}") for i, sid in enumerate(sids)))
        connected = time.monotonic()
        views = [await status_of(sid, namespace) for sid in sids]
        assert all(v.status == SessionStatus.CONNECTED for v in views)
        workers = _worker_nodes()
        assert len(workers) == MAX_WORKERS, workers
        where = Counter(e.node_id for e in fleet.session_actors(namespace))
        assert set(where) <= {w.node_id for w in workers}, "no session on the head"
        assert max(where.values()) <= PER_WORKER
        assert (await registry.pending.remote()).count == 0
        assert [sid for sid, _ in await registry.creations.remote()].count(sids[0]) == 1, (
            "a session waiting for a node was not killed and created again"
        )
        print(
            f"autoscale up: {pending.count} pending after {first_pending - started:.1f}s, "
            f"{SESSIONS} connected on {len(workers)} new nodes after {connected - started:.1f}s"
        )

        for sid in sids:
            await registry.destroy_session.remote(sid)
        emptied = time.monotonic()
        await eventually(
            lambda: asyncio.to_thread(_worker_nodes), lambda nodes: nodes == [], timeout=SCALE_DOWN_TIMEOUT_S
        )
        print(f"autoscale down: idle workers gone {time.monotonic() - emptied:.1f}s after the last session")
    finally:
        kill_namespace_actors(namespace)
