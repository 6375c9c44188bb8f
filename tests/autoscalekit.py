"""A Ray cluster that grows with demand on one machine: Ray's fake multi-node provider (its worker nodes
are real raylets started as local processes by the autoscaler), for tests and benchmarks.

`ray.cluster_utils.AutoscalingCluster` does not work as shipped (../shared/notes/ray.md: it reads a file
the wheel lacks, takes Redis's port, quotes custom resources literally and runs `ray stop --force`, which
kills every Ray on the machine). Here the head is started by `ray start --autoscaling-config` in a process
session of its own, and only that session's processes are stopped afterwards.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import ray
from ray._private.authentication.authentication_token_setup import generate_and_save_token
from ray._raylet import AuthenticationTokenLoader

from api.local_ray import _kill_ray
from api.localproc import free_port

WORKER_TYPE = "wa.session.worker"
STORE_BYTES = 80 * 2**20


def cluster_config(gcs_address: str, per_worker: int, max_workers: int) -> dict[str, object]:
    """A head without session capacity (no CPU either) and one worker type of `per_worker` sessions."""
    return {
        "cluster_name": "wab-autoscaling",
        "max_workers": max_workers,
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
                "resources": {"CPU": 0, "wa_session": per_worker, "object_store_memory": STORE_BYTES},
                "node_config": {},
                "min_workers": 0,
                "max_workers": max_workers,
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


@contextmanager
def autoscaling_cluster(per_worker: int, max_workers: int, *, namespace: str | None = None) -> Iterator[str]:
    """The head started and this process connected to it (`ray.init`); yields its address.

    Token authentication, as every other cluster of the suite: Ray fixes a process's authentication
    mode the first time it connects, so a cluster without tokens here would leave every later test of
    the same process unable to reach its own. The token (made now if this process has none yet) is
    the file Ray's loader reads, which the head and the autoscaler's nodes inherit.
    """
    os.environ["RAY_AUTH_MODE"] = "token"
    loader = AuthenticationTokenLoader.instance()
    if not loader.has_token(ignore_auth_mode=True):
        generate_and_save_token()
        loader.reset_cache()
    ip = ray._private.services.get_node_ip_address()  # type: ignore[no-untyped-call]
    address = f"{ip}:{free_port()}"
    temp_dir = tempfile.mkdtemp(prefix="wab-as-")  # short: Ray's socket paths must fit 107 bytes
    config = Path(temp_dir) / "cluster.json"
    config.write_text(json.dumps(cluster_config(address, per_worker, max_workers)))
    env = {
        **{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"},
        "AUTOSCALER_UPDATE_INTERVAL_S": "1",
        "RAY_FAKE_CLUSTER": "1",
        # Fixed defaults would collide with any other Ray on the machine.
        "AUTOSCALER_METRIC_PORT": str(free_port()),
        "DASHBOARD_METRIC_PORT": str(free_port()),
    }
    ray_bin = Path(sys.executable).with_name("ray")
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
        f"--object-store-memory={STORE_BYTES}",
        f"--autoscaling-config={config}",
        f"--temp-dir={temp_dir}",
    ]
    log = Path(temp_dir) / "ray-start.log"
    with log.open("w") as out:
        # Its own process session: what it starts, the autoscaler's worker nodes included, is found
        # (and stopped) by session id, never by name.
        proc = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        if proc.wait(timeout=120) != 0:
            raise RuntimeError(f"ray start failed:\n{log.read_text()[-3000:]}")
        ray.init(address=address, namespace=namespace, logging_level=logging.WARNING, configure_logging=False)
        yield address
    finally:
        ray.shutdown()
        _kill_ray(proc.pid)
        shutil.rmtree(temp_dir, ignore_errors=True)
