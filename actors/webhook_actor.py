"""The webhook dispatchers as Ray actors, and their supervision by the SessionRegistry.

Each dispatcher is a detached actor named `webhook-dispatcher-<index>` (`num_cpus=0`,
`max_restarts=-1`): it keeps going when an API process restarts, Ray restarts its process if it dies, and
its state is PostgreSQL (cursor, deliveries), so a restarted one resumes where the last left off. The
registry (`WebhookSupervision.run`, one of its loops) creates missing ones every pass and replaces one
that has not answered a ping for `UNRESPONSIVE_PASSES` passes; like the registry's other loops, it
catches every error and never dies.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import ray
from ray.actor import ActorHandle

from actors.tasks import TaskGroup
from actors.webhook_dispatcher import Dispatcher
from actors.webhook_ports import WebhookConfig
from actors.webhook_sender import Sender

log = logging.getLogger(__name__)

PING_TIMEOUT_S = 5.0
UNRESPONSIVE_PASSES = 3


def dispatcher_name(index: int) -> str:
    return f"webhook-dispatcher-{index}"


class WebhookDispatcherActor:
    """The Ray shell of one `Dispatcher`."""

    def __init__(self, config: WebhookConfig, index: int) -> None:
        if not logging.getLogger().handlers:  # its own process: what it decides shows in its log
            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        self._sender = Sender(allow_private=config.allow_private, timeout_s=config.timeout_s)
        store = config.stores.webhooks(config.database_dsn)
        self._dispatcher = Dispatcher(config, index, store, self._sender)
        self._tasks = TaskGroup(f"webhook dispatcher {index}")
        self._tasks.spawn(self._dispatcher.run(), "dispatch")

    async def ping(self) -> dict[str, Any]:
        """Where it is: partition, cursor, queues in flight, its counts since it started, its process."""
        return {**self._dispatcher.status(), **self._dispatcher.counts, "pid": os.getpid()}


def ensure_dispatcher(config: WebhookConfig, namespace: str, index: int) -> ActorHandle[Any]:
    """The dispatcher `index`, created if it does not exist (`get_if_exists`)."""
    remote: Any = ray.remote(WebhookDispatcherActor)
    handle: ActorHandle[Any] = remote.options(
        name=dispatcher_name(index),
        namespace=namespace,
        lifetime="detached",
        get_if_exists=True,
        max_restarts=-1,
        max_task_retries=0,
        num_cpus=0,
    ).remote(config, index)
    return handle


def dispatcher_index(name: str) -> int | None:
    prefix, _, index = name.rpartition("-")
    return int(index) if prefix == "webhook-dispatcher" and index.isdigit() else None


class WebhookSupervision:
    """The registry's loop that keeps `config.dispatchers` dispatchers alive."""

    def __init__(self, config: WebhookConfig, namespace: str, interval_s: float) -> None:
        self._config = config
        self._namespace = namespace
        self._interval_s = interval_s
        self._misses: dict[int, int] = {}

    async def run(self) -> None:
        log.info("registry: supervising %d webhook dispatchers", self._config.dispatchers)
        while True:
            try:
                await self.reconcile()
            except Exception:
                log.exception("registry: webhook dispatchers' pass failed; retrying")
            await asyncio.sleep(self._interval_s)

    async def reconcile(self) -> None:
        self._stop_extras()
        indexes = range(self._config.dispatchers)
        handles = [ensure_dispatcher(self._config, self._namespace, i) for i in indexes]
        pings = await asyncio.gather(
            *(asyncio.wait_for(h.ping.remote(), PING_TIMEOUT_S) for h in handles), return_exceptions=True
        )
        for index, handle, result in zip(indexes, handles, pings, strict=True):
            if not isinstance(result, BaseException):
                self._misses.pop(index, None)
                if result.get("partition") != f"{index}/{self._config.dispatchers}":
                    # Started with another count: it would share sessions with the others. Replaced.
                    log.warning(
                        "registry: webhook dispatcher %d has partition %s; replacing it", index, result
                    )
                    ray.kill(handle, no_restart=True)
                continue
            self._misses[index] = self._misses.get(index, 0) + 1
            if self._misses[index] >= UNRESPONSIVE_PASSES:
                log.warning(
                    "registry: webhook dispatcher %d unresponsive for %d passes (%s); replacing it",
                    index,
                    UNRESPONSIVE_PASSES,
                    type(result).__name__,
                )
                ray.kill(handle, no_restart=True)  # its name frees; the next pass creates it anew
                self._misses.pop(index, None)

    def _stop_extras(self) -> None:
        """Stop dispatchers beyond the configured count (left by a run with more): two dispatchers must
        never share a session, or its order would not hold."""
        for entry in ray.util.list_named_actors(all_namespaces=True):
            index = dispatcher_index(entry["name"])
            if entry["namespace"] != self._namespace or index is None or index < self._config.dispatchers:
                continue
            log.warning(
                "registry: stopping webhook dispatcher %d (only %d configured)",
                index,
                self._config.dispatchers,
            )
            try:
                ray.kill(ray.get_actor(entry["name"], namespace=self._namespace), no_restart=True)
            except ValueError:
                continue  # gone meanwhile
