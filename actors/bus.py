"""A session's publisher to Redis pub/sub. Redis being down never stops or slows a session.

While Redis is unreachable, `publish` returns at once (the event is dropped: the state stays readable
from the actor and PostgreSQL, and messages are in the store); a probe retries every `retry_s`, and when
Redis answers again the latest status and QR are published anew so subscribers catch up.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from actors.publisher import Publisher
from actors.tasks import TaskGroup
from actors.wire import channel

log = logging.getLogger(__name__)

# Kinds whose last payload is re-sent after an outage (a subscriber needs the current one).
_LATEST_KINDS = ("status", "qr")


class EventBus:
    def __init__(
        self, redis_url: str, session_id: str, *, retry_s: float = 1.0, timeout_s: float = 0.5
    ) -> None:
        self._session_id = session_id
        self._retry_s = retry_s
        self._redis = Publisher(redis_url, timeout_s=timeout_s)
        self._latest: dict[str, str] = {}
        self._down = False
        self._tasks = TaskGroup(f"bus {session_id}")
        self.published = 0

    @property
    def up(self) -> bool:
        return not self._down

    async def publish(self, kind: str, payload: dict[str, Any]) -> None:
        """Publish on `wa:<kind>:<session id>`; never raises."""
        body = json.dumps(payload, separators=(",", ":"))
        if kind in _LATEST_KINDS:
            self._latest[kind] = body
        if kind == "status" and payload.get("status") != "qr_ready":
            self._latest.pop("qr", None)  # a stale QR must not be replayed after pairing
        if self._down:
            return
        try:
            await self._redis.publish(channel(kind, self._session_id), body)
            self.published += 1
        except OSError as err:
            self._went_down(err)

    def _went_down(self, err: BaseException) -> None:
        if self._down:
            return
        self._down = True
        log.warning("session %s: Redis unreachable (%s); publishing paused", self._session_id, err)
        self._tasks.spawn(self._probe(), "redis probe")

    async def _probe(self) -> None:
        while True:
            await asyncio.sleep(self._retry_s)
            try:
                await self._redis.ping()
            except OSError:
                continue
            self._down = False
            log.info("session %s: Redis is back; publishing resumed", self._session_id)
            for kind, body in list(self._latest.items()):
                try:
                    await self._redis.publish(channel(kind, self._session_id), body)
                    self.published += 1
                except OSError as err:
                    self._down = True
                    log.debug("session %s: Redis lost again while catching up: %s", self._session_id, err)
                    break
            if not self._down:
                return

    async def close(self) -> None:
        await self._tasks.cancel_all()
        try:
            await self._redis.aclose()
        except OSError:
            log.debug("session %s: error closing the Redis client", self._session_id)
