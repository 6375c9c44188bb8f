"""The webhook tables (SQLModel): the receivers users register, each event's delivery to each, and how
far each dispatcher has read the event log. `persistence.models` imports this module (one metadata)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Column, Field, SQLModel


def _ts(**kw: Any) -> Any:
    return Field(sa_column=Column(sa.DateTime(timezone=True), **kw))


class Webhook(SQLModel, table=True):
    """A receiver of one user's events: all of them, or of one session, or of some frame types."""

    __tablename__ = "webhook"
    __table_args__ = (sa.Index("ix_webhook_user_id", "user_id"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    user_id: str = Field(max_length=128, nullable=False)
    url: str = Field(max_length=2048, nullable=False)
    # Frame types delivered (null: every type).
    events: list[str] | None = Field(default=None, sa_column=Column(JSONB, nullable=True))
    session_id: uuid.UUID | None = Field(default=None, nullable=True)
    # `whsec_<base64>`: the receiver needs it in clear to check signatures, and so does the dispatcher.
    secret: str = Field(max_length=128, nullable=False)
    created_at: datetime = _ts(nullable=False, server_default=sa.func.now())


class WebhookDelivery(SQLModel, table=True):
    """One event for one webhook, with the frame it is sent as: it outlives the event log's window."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (
        sa.CheckConstraint("state IN ('pending', 'delivered', 'failed')", name="ck_webhook_delivery_state"),
        # The head of each (webhook, session) queue: what the dispatchers look for.
        sa.Index(
            "ix_webhook_delivery_pending",
            "webhook_id",
            "session_id",
            "event_ms",
            "event_seq",
            postgresql_where=sa.text("state = 'pending'"),
        ),
        sa.Index("ix_webhook_delivery_listing", "webhook_id", "event_ms", "event_seq"),
        sa.Index("ix_webhook_delivery_updated_at", "updated_at"),
    )

    webhook_id: uuid.UUID = Field(
        sa_column=Column(sa.Uuid, sa.ForeignKey("webhook.id", ondelete="CASCADE"), primary_key=True)
    )
    # The event log entry's id (its frame's `cursor`, the `webhook-id` header), also as numbers to order by.
    event_id: str = Field(primary_key=True, max_length=48)
    event_ms: int = Field(sa_column=Column(sa.BigInteger, nullable=False))
    event_seq: int = Field(sa_column=Column(sa.BigInteger, nullable=False))
    session_id: uuid.UUID = Field(nullable=False)
    type: str = Field(max_length=32, nullable=False)
    body: str = Field(sa_column=Column(sa.Text, nullable=False))
    state: str = Field(default="pending", max_length=16, nullable=False)
    attempts: int = Field(default=0, sa_column=Column(sa.Integer, nullable=False, server_default="0"))
    last_status: int | None = Field(default=None, nullable=True)
    last_error: str | None = Field(default=None, max_length=200, nullable=True)
    next_attempt_at: datetime = _ts(nullable=False, server_default=sa.func.now())
    created_at: datetime = _ts(nullable=False, server_default=sa.func.now())
    updated_at: datetime = _ts(nullable=False, server_default=sa.func.now())


class WebhookCursor(SQLModel, table=True):
    """The last event log entry a dispatcher partition has recorded deliveries for."""

    __tablename__ = "webhook_cursor"

    partition: str = Field(primary_key=True, max_length=32)
    cursor: str = Field(max_length=48, nullable=False)
    updated_at: datetime = _ts(nullable=False, server_default=sa.func.now())
