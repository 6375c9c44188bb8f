"""The registry's actor creations: paced, at most one in flight per session, never for a destroyed one."""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

from actors.registry_config import RegistryConfig, create_session_actor
from actors.registry_directory import SessionDirectory
from actors.supervision import Pacer
from actors.tasks import TaskGroup

log = logging.getLogger(__name__)


class Creations:
    """Creates session actors `reload_per_s` apart; remembers destroys so that no pass undoes one."""

    def __init__(self, config: RegistryConfig, directory: SessionDirectory, tasks: TaskGroup) -> None:
        self._config = config
        self._directory = directory
        self._tasks = tasks
        self._pacer = Pacer(config.reload_per_s)
        self._creating: set[str] = set()
        # When each destroy finished (monotonic; inf while it runs): no pass recreates the session between
        # the kill and the row's delete, nor a pass that read the rows before the delete
        # (tests/test_autoscaling.py met it: an orphan created after the destroy).
        self._destroyed: dict[str, float] = {}
        self._created: deque[tuple[str, float]] = deque(maxlen=1000)
        self._avoid: frozenset[str] = frozenset()  # nodes that take no new session (drained)

    def create(self, session_id: str, node_id: str | None = None) -> None:
        """Schedule the creation of the session's actor unless one is under way (returns at once)."""
        if session_id in self._creating:
            return
        self._creating.add(session_id)
        self._tasks.spawn(self._create_paced(session_id, node_id), f"create {session_id}")

    def avoid(self, nodes: frozenset[str]) -> None:
        """From now on, create no actor on these nodes."""
        self._avoid = nodes

    @contextmanager
    def destroying(self, session_id: str) -> Iterator[None]:
        """While the block runs, and for passes that started before it ended, the session is not created."""
        self._destroyed[session_id] = math.inf
        try:
            yield
        finally:
            self._destroyed[session_id] = time.monotonic()

    def not_to_create(self, pass_started: float) -> set[str]:
        """Sessions a pass that started at `pass_started` must not create: being created or destroyed."""
        # Destroys still running, or ended during this pass, may not show in its rows; older ones do.
        self._destroyed = {sid: at for sid, at in self._destroyed.items() if at >= pass_started}
        return self._creating | self._destroyed.keys()

    def history(self) -> list[tuple[str, float]]:
        """The last 1000 actors created: (session id, unix time), oldest first."""
        return list(self._created)

    async def _create_paced(self, session_id: str, node_id: str | None) -> None:
        try:
            if self._directory.handle(session_id) is not None:
                return
            await self._pacer.wait()
            if session_id in self._destroyed:
                return  # destroyed while it waited for its turn
            self._created.append((session_id, time.time()))
            create_session_actor(self._config, session_id, node_id, self._avoid)
            log.info("registry: session %s actor created (%d so far)", session_id, len(self._created))
        finally:
            self._creating.discard(session_id)
