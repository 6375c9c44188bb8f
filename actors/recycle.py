"""How a session process ends on purpose, and how an unplanned end is told apart from it.

Ray prints a multi-line "A worker died or was killed while executing a task by an unexpected system
error ... OOM killer ... SIGSEGV" warning on the console of the driver that created an actor for
every actor process that exits without telling Ray: `os._exit` (any code) as much as SIGKILL
(measured, Ray 2.60). A planned recycle therefore asks Ray itself to end and restart the actor
(`ray.kill(own handle, no_restart=False)`): Ray treats that as intended, prints nothing, and starts a
fresh process under the same actor (tests/test_log_hygiene.py). Before that, the process leaves a
marker in Ray's internal key-value store (kept by the GCS, so it holds wherever the next process is
placed). A process that Ray restarted and that finds no marker replaced one that ended unexpectedly
(a crash, an OOM kill, a kill -9, a lost node): it says so once, in words, with the session id, on
the console of every driver (the API's included) and in its own log.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import time
import warnings

import ray

log = logging.getLogger(__name__)

_KV_NAMESPACE = "whatsapp-bridge-recycle"
# How long a planned recycle waits for Ray to end the process before leaving by itself (Ray needs its
# GCS for the kill; measured: the process is gone within about 0.2 s when the GCS answers).
KILL_WAIT_S = 10.0
ERROR_TYPE = "session_process_died"


def _key(session_id: str) -> bytes:
    return f"planned:{session_id}".encode()


def exit_for_restart(session_id: str, why: str) -> None:
    """End this actor's process so that Ray starts a fresh one, without Ray calling it a crash. Never
    returns."""
    from ray.experimental import internal_kv

    try:
        internal_kv._internal_kv_put(
            _key(session_id), f"{os.getpid()} {why}".encode(), namespace=_KV_NAMESPACE
        )
        handle = ray.get_runtime_context().current_actor
        logging.shutdown()
        sys.stderr.flush()
        ray.kill(handle, no_restart=False)
        time.sleep(KILL_WAIT_S)  # Ray ends the process meanwhile; nothing else runs in it any more
    except Exception:
        log.warning("session %s: Ray did not end the process; leaving by itself", session_id, exc_info=True)
    logging.shutdown()
    sys.stderr.flush()
    os._exit(1)  # Ray restarts us all the same (max_restarts=-1), and prints its crash warning


def leave_superseded(session_id: str, why: str) -> None:
    """End this process without asking Ray: it may no longer be its actor's current process (after a
    partition Ray runs a newer one elsewhere), and a `ray.kill` of its actor would end that newer one.
    If it was current, Ray restarts the actor (printing its crash warning). Never returns."""
    log.warning("session %s: leaving the process: %s", session_id, why)
    logging.shutdown()
    sys.stderr.flush()
    os._exit(1)


@functools.cache
def was_restarted() -> bool:
    """Whether Ray restarted this actor's process (a GCS query, asked once per process)."""
    with warnings.catch_warnings():
        # Ray 2.60's property reads its own deprecated `actor_id`: a RayDeprecationWarning on every call.
        warnings.simplefilter("ignore", DeprecationWarning)
        return bool(ray.get_runtime_context().was_current_actor_reconstructed)


def report_restart(session_id: str) -> None:
    """In a process Ray has just (re)started: if it replaces one that ended unplanned, say so once."""
    from ray.experimental import internal_kv

    if not was_restarted():
        internal_kv._internal_kv_del(_key(session_id), namespace=_KV_NAMESPACE)  # a stale marker
        return
    planned = internal_kv._internal_kv_get(_key(session_id), namespace=_KV_NAMESPACE)
    if planned is not None:
        internal_kv._internal_kv_del(_key(session_id), namespace=_KV_NAMESPACE)
        log.info("session %s: process %d follows a planned recycle", session_id, os.getpid())
        return
    message = (
        f"session {session_id}: its process ended unexpectedly (a crash, an out-of-memory kill, "
        f"a kill -9 or a lost node); Ray restarted it as process {os.getpid()} on node "
        f"{ray.util.get_node_ip_address()}"
    )
    log.warning("%s", message)
    from ray._private.utils import publish_error_to_driver

    # To every driver (job id nil): Ray's own warning reaches only the job that created the actor.
    publish_error_to_driver(ERROR_TYPE, message, ray._private.worker.global_worker.gcs_client)
