"""`BareActor`: the smallest async actor, Ray's own per-process floor. A module of its own on purpose:
the worker imports the module an actor class lives in, and nothing else may come along."""

from __future__ import annotations

import os
from typing import Any

CAPACITY_RESOURCE = "wa_session"  # actors.registry.CAPACITY_RESOURCE, not imported: see above


class BareActor:
    async def ping(self) -> int:
        return os.getpid()


def create_bare_actor(namespace: str, index: int) -> Any:
    import ray

    remote: Any = ray.remote(BareActor)
    return remote.options(
        name=f"bare-{index}",
        namespace=namespace,
        lifetime="detached",
        num_cpus=0,
        resources={CAPACITY_RESOURCE: 1},
        scheduling_strategy="SPREAD",
    ).remote()


def _private_mib() -> float:
    with open("/proc/self/smaps_rollup") as rollup:
        fields = dict(line.split()[:2] for line in rollup if line.startswith("Private_"))
    return sum(int(v) for v in fields.values()) / 1024


class ImportProbe:
    """Measures what importing a module costs inside a Ray worker (USS before and after)."""

    def cost(self, module: str, pre: list[str], block: list[str]) -> dict[str, Any]:
        import gc
        import importlib
        import sys
        import time

        for name in pre:
            importlib.import_module(name)
        for name in block:
            sys.modules.setdefault(name, None)  # type: ignore[arg-type]
        gc.collect()
        before, count = _private_mib(), len(sys.modules)
        started = time.perf_counter()
        importlib.import_module(module)
        took = time.perf_counter() - started
        gc.collect()
        return {
            "uss_mib": _private_mib() - before,
            "modules": len(sys.modules) - count,
            "seconds": took,
        }
