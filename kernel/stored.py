"""What a session's store hands back to the session: its row, a picture's state, a read, a send record.

Defined here, not in `persistence/`, so the session (actors/) and its store (persistence/) share them
without importing each other: `actors.ports.SessionStorePort` is the contract, `persistence.session_store`
the implementation.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kernel.domain import Reason, SessionStatus, SessionView
from kernel.proxy import ProxySettings

# How long a send's Idempotency-Key is remembered.
KEEP_HOURS = 24


@dataclass(frozen=True, slots=True)
class StoredSession:
    """The session's row as its actor needs it: what clients see plus device and pairing state."""

    view: SessionView
    device_jid: str | None
    qr_rounds: int
    connect_failures: int
    proxy: ProxySettings | None = None  # with its password: the session dials through it


@dataclass(frozen=True, slots=True)
class StoredPicture:
    """What WhatsApp last said about a chat's picture (`id` None: it has none)."""

    id: str | None
    url: str | None
    checked_at: datetime | None


@dataclass(frozen=True, slots=True)
class ChatRead:
    """A chat whose unread count a read changed: what the `chat` frame says."""

    chat_id: str
    unread_count: int
    name: str | None


@dataclass(frozen=True, slots=True)
class SendRecord:
    """One key's send: `message_id` None while (or if) its outcome is unknown."""

    key: str
    session_id: str
    fingerprint: str
    message_id: str | None
    sent_at: datetime | None


@dataclass(frozen=True, slots=True)
class SessionToRun:
    """What the supervisor needs to (re)start a session."""

    id: str
    user_id: str
    device_jid: str | None
    status: SessionStatus
    reason: Reason | None


@dataclass(frozen=True, slots=True)
class Operation:
    """A drain or a rebalance as stored (`fleet_operation`): the API creates it, the registry runs it."""

    id: str
    kind: str  # drain | rebalance
    node_id: str | None
    state: str  # running | done | cancelled
    forced: bool
    planned: int
    left: int
    moved: tuple[dict[str, Any], ...]  # one per move: sessionId, fromNode, toNode, status, spoolLeft, error
    waiting: tuple[str, ...]
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None

    @property
    def running(self) -> bool:
        return self.state == "running"
