"""One WebSocket client's side of the hub, and the frames it is sent."""

from __future__ import annotations

import asyncio
from typing import Any

from api import eventlog
from kernel.domain import SessionStatus, SessionView
from kernel.event_frames import FRAME_TYPES, frame_text
from kernel.wire import JSON, qr_payload

__all__ = ["FRAME_TYPES", "frame_text"]

QUEUE_FRAMES = 256
# WebSocket close codes.
NORMAL_CLOSURE, GOING_AWAY, TRY_AGAIN_LATER = 1000, 1001, 1013


class Subscriber:
    """One WebSocket client's view of the hub: who it is, what it watches, its outgoing queue."""

    def __init__(
        self, user_id: str, session_filter: str | None, start: str, queue_frames: int = QUEUE_FRAMES
    ) -> None:
        self.user_id = user_id
        self.session_filter = session_filter
        # The log position when it subscribed: entries after it come live, the ones up to it by replay.
        self.start = start
        # Live entries up to here are not sent (the client said it has them: its cursor).
        self.seen_upto = eventlog.START
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


def qr_of(view: SessionView) -> JSON | None:
    if view.status != SessionStatus.QR_READY or not view.qr or view.qr_expires_at is None:
        return None
    return qr_payload(view.qr, view.qr_expires_at)


def changed(sub: Subscriber, frame_type: str, session_id: str, payload: dict[str, Any]) -> bool:
    if frame_type == "status":
        return sub.seen_status.get(session_id) != payload
    if frame_type == "qr":
        return sub.seen_qr.get(session_id) != payload.get("qr")
    return True
