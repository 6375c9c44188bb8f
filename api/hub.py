"""Live events for WebSocket clients: one Redis subscription per API process, fanned out in-process.

- One pattern subscription (`wa:*`) per process. Each event is routed to the sockets of the session's
  owner (`api.owners`) that may see that session.
- Each socket has a bounded queue. Queuing never blocks: a socket whose queue is full is dropped (it
  reconnects and gets a fresh snapshot), so one slow or dead client never delays the others.
- While Redis is down, the hub polls the actors of the sessions somebody watches every
  `poll_interval_s` and queues a `status` (and `qr`) frame when it changed; the subscription is retried
  with capped backoff, and once it is back polling stops (after one catch-up round).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterable
from typing import Any

from redis.asyncio import Redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from actors.domain import SessionStatus, SessionView
from actors.errors import WaError
from actors.tasks import TaskGroup
from actors.wire import JSON, qr_payload, status_payload
from api.database import Database
from api.handles import SessionActors
from api.metrics import Metrics
from api.owners import SessionOwners
from persistence import repo

log = logging.getLogger(__name__)

PATTERN = "wa:*"
FRAME_TYPES = {"qr": "qr", "status": "status", "msg": "message"}
QUEUE_FRAMES = 256
POLL_INTERVAL_S = 2.0
STATUS_TIMEOUT_S = 2.0
# WebSocket close codes.
NORMAL_CLOSURE, GOING_AWAY, TRY_AGAIN_LATER = 1000, 1001, 1013
BACKOFF_MAX_S = 5.0


def frame_text(frame_type: str, session_id: str, payload: JSON) -> str:
    """A WebSocket frame: `{type, sessionId, **payload}`."""
    return json.dumps({"type": frame_type, "sessionId": session_id, **payload}, separators=(",", ":"))


class Subscriber:
    """One WebSocket client's view of the hub: who it is, what it watches, its outgoing queue."""

    def __init__(self, user_id: str, session_filter: str | None, queue_frames: int = QUEUE_FRAMES) -> None:
        self.user_id = user_id
        self.session_filter = session_filter
        self.queue: asyncio.Queue[str] = asyncio.Queue(queue_frames)
        self.dropped = asyncio.Event()
        self.close_code = NORMAL_CLOSURE
        # What this client was last told, to send only changes while polling.
        self.seen_status: dict[str, JSON] = {}
        self.seen_qr: dict[str, str] = {}

    def drop(self, close_code: int) -> None:
        """Tell the socket's handler to close with `close_code`; nothing more is queued."""
        self.close_code = close_code
        self.dropped.set()

    def wants(self, session_id: str) -> bool:
        return self.session_filter is None or self.session_filter == session_id

    def remember(self, frame_type: str, session_id: str, payload: JSON) -> None:
        if frame_type == "status":
            self.seen_status[session_id] = payload
            if payload.get("status") != SessionStatus.QR_READY:
                self.seen_qr.pop(session_id, None)
        elif frame_type == "qr":
            self.seen_qr[session_id] = str(payload.get("qr"))


class EventHub:
    def __init__(
        self,
        redis_url: str,
        db: Database,
        owners: SessionOwners,
        actors: SessionActors,
        metrics: Metrics,
        *,
        poll_interval_s: float = POLL_INTERVAL_S,
        queue_frames: int = QUEUE_FRAMES,
    ) -> None:
        self._redis_url = redis_url
        self._db = db
        self._owners = owners
        self._actors = actors
        self._metrics = metrics
        self._poll_interval_s = poll_interval_s
        self._queue_frames = queue_frames
        self._by_user: dict[str, set[Subscriber]] = {}
        self._user_sessions: dict[str, list[SessionView]] = {}
        self._tasks = TaskGroup("event hub")
        self._redis_up = False
        self._catch_up = False
        self._stopping = False

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._tasks.spawn(self._subscription_loop(), "redis subscription")
        self._tasks.spawn(self._poll_loop(), "status polling")

    async def stop(self) -> None:
        # The flag too: redis-py can swallow a cancellation that lands as its read timeout expires.
        self._stopping = True
        await self._tasks.cancel_all()
        for subs in list(self._by_user.values()):
            for sub in subs:
                sub.drop(GOING_AWAY)
        self._by_user.clear()

    @property
    def redis_up(self) -> bool:
        return self._redis_up

    # ------------------------------------------------------------------ subscribers

    def subscribe(
        self, user_id: str, session_filter: str | None, sessions: Iterable[SessionView]
    ) -> Subscriber:
        """Register a client of `user_id`; `sessions` are the user's sessions as the caller just read them."""
        sub = Subscriber(user_id, session_filter, self._queue_frames)
        self._by_user.setdefault(user_id, set()).add(sub)
        views = list(sessions)
        self._user_sessions[user_id] = views
        for view in views:
            self._owners.learn(view.id, user_id)
        self._metrics.ws_clients.inc()
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        subs = self._by_user.get(sub.user_id)
        if subs is None or sub not in subs:
            return
        subs.discard(sub)
        if not subs:
            del self._by_user[sub.user_id]
            self._user_sessions.pop(sub.user_id, None)
        self._metrics.ws_clients.dec()

    async def snapshot(self, sub: Subscriber, sessions: Iterable[SessionView]) -> list[str]:
        """The frames a client gets on open: a `status` per session, and the `qr` showing, if any."""
        frames: list[str] = []
        for view in await self._live_views([v for v in sessions if sub.wants(v.id)]):
            payload = status_payload(view)
            sub.remember("status", view.id, payload)
            frames.append(frame_text("status", view.id, payload))
            qr = _qr_of(view)
            if qr is not None:
                sub.remember("qr", view.id, qr)
                frames.append(frame_text("qr", view.id, qr))
        return frames

    def _offer(self, sub: Subscriber, frame_type: str, session_id: str, payload: JSON, text: str) -> None:
        if sub.dropped.is_set():
            return
        try:
            sub.queue.put_nowait(text)
        except asyncio.QueueFull:
            log.warning(
                "dropping a WebSocket client of user %s: %d frames unsent", sub.user_id, sub.queue.qsize()
            )
            self._metrics.ws_dropped.inc()
            sub.drop(TRY_AGAIN_LATER)
            self.unsubscribe(sub)
            return
        sub.remember(frame_type, session_id, payload)
        self._metrics.ws_frames.labels(type=frame_type).inc()

    def _deliver(
        self, user_id: str, frame_type: str, session_id: str, payload: JSON, *, changes_only: bool
    ) -> None:
        text: str | None = None
        for sub in list(self._by_user.get(user_id, ())):
            if not sub.wants(session_id):
                continue
            if changes_only and not _changed(sub, frame_type, session_id, payload):
                continue
            text = text or frame_text(frame_type, session_id, payload)
            self._offer(sub, frame_type, session_id, payload, text)

    # ------------------------------------------------------------------ Redis

    def _redis(self) -> Redis:
        return Redis.from_url(
            self._redis_url,
            socket_connect_timeout=2.0,
            socket_timeout=5.0,
            health_check_interval=5,
            retry=Retry(NoBackoff(), 0),
        )

    async def _subscription_loop(self) -> None:
        backoff = 0.25
        while not self._stopping:
            client = self._redis()
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.psubscribe(PATTERN)
                self._went_up()
                backoff = 0.25
                while not self._stopping:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is not None and message.get("type") == "pmessage":
                        await self._dispatch(message["channel"], message["data"])
                return
            except (RedisError, OSError) as err:
                self._went_down(err)
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(pubsub.aclose(), 2.0)  # type: ignore[no-untyped-call]
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(client.aclose(), 2.0)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX_S)

    def _went_up(self) -> None:
        if not self._redis_up:
            log.info("event subscription to Redis established")
            self._catch_up = True  # what changed while we were not listening
        self._redis_up = True
        self._metrics.event_subscription.set(1)

    def _went_down(self, err: BaseException) -> None:
        if self._redis_up:
            log.warning("lost the Redis event subscription (%s); polling session status instead", err)
        self._redis_up = False
        self._metrics.event_subscription.set(0)

    async def _dispatch(self, channel: bytes | str, data: bytes | str) -> None:
        name = channel.decode() if isinstance(channel, bytes) else channel
        _, kind, session_id = [*name.split(":", 2), "", ""][:3]
        frame_type = FRAME_TYPES.get(kind)
        if frame_type is None or not session_id:
            return
        self._metrics.events.labels(type=frame_type).inc()
        if not self._by_user:
            return
        owner = await self._owner(session_id)
        if owner is None or owner not in self._by_user:
            return
        try:
            payload = json.loads(data)
        except ValueError:
            log.debug("ignoring a malformed event on %s", name)
            return
        if isinstance(payload, dict):
            self._deliver(owner, frame_type, session_id, payload, changes_only=False)

    async def _owner(self, session_id: str) -> str | None:
        try:
            return await self._owners.owner(session_id)
        except WaError:
            return None

    # ------------------------------------------------------------------ polling while Redis is down

    async def _poll_loop(self) -> None:
        while True:
            await asyncio.sleep(self._poll_interval_s)
            if self._redis_up and not self._catch_up:
                continue
            self._catch_up = False
            try:
                await self.poll_once()
            except Exception:
                log.exception("status polling round failed")

    async def poll_once(self) -> None:
        """Ask the actors of every watched session for their status; queue what changed."""
        users = list(self._by_user)
        for user_id in users:
            try:
                self._user_sessions[user_id] = await self._db.run(repo.list_sessions, user_id)
            except WaError:
                pass  # the database is down too: keep polling the sessions we knew of
        rounds = [self._poll_user(user_id) for user_id in users]
        await asyncio.gather(*rounds)

    async def _poll_user(self, user_id: str) -> None:
        watched = [v for v in self._user_sessions.get(user_id, []) if self._watched(user_id, v.id)]
        for view in await self._live_views(watched):
            self._deliver(user_id, "status", view.id, status_payload(view), changes_only=True)
            qr = _qr_of(view)
            if qr is not None:
                self._deliver(user_id, "qr", view.id, qr, changes_only=True)

    def _watched(self, user_id: str, session_id: str) -> bool:
        return any(sub.wants(session_id) for sub in self._by_user.get(user_id, ()))

    async def _live_views(self, views: list[SessionView]) -> list[SessionView]:
        """Each session as its actor sees it now; the given (database) view when the actor cannot say."""

        async def live(view: SessionView) -> SessionView:
            try:
                current: SessionView = await self._actors.call(view.id, "status", timeout_s=STATUS_TIMEOUT_S)
                return current
            except Exception as err:  # unavailable, or failing: what the database says is the best we have
                log.debug("session %s: status from the database (%s)", view.id, type(err).__name__)
                return view

        return list(await asyncio.gather(*(live(v) for v in views)))


def _qr_of(view: SessionView) -> JSON | None:
    if view.status != SessionStatus.QR_READY or not view.qr or view.qr_expires_at is None:
        return None
    return qr_payload(view.qr, view.qr_expires_at)


def _changed(sub: Subscriber, frame_type: str, session_id: str, payload: dict[str, Any]) -> bool:
    if frame_type == "status":
        return sub.seen_status.get(session_id) != payload
    if frame_type == "qr":
        return sub.seen_qr.get(session_id) != payload.get("qr")
    return True
