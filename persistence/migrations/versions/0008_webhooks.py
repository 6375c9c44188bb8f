"""Webhooks: receivers, deliveries (with the frame they send) and the dispatchers' read positions.

Revision ID: 0008
Revises: 0006
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "webhook",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("events", JSONB, nullable=True),
        sa.Column("session_id", sa.Uuid, nullable=True),
        sa.Column("secret", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.create_index("ix_webhook_user_id", "webhook", ["user_id"])
    op.create_table(
        "webhook_delivery",
        sa.Column("webhook_id", sa.Uuid, sa.ForeignKey("webhook.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("event_id", sa.String(48), primary_key=True),
        sa.Column("event_ms", sa.BigInteger, nullable=False),
        sa.Column("event_seq", sa.BigInteger, nullable=False),
        sa.Column("session_id", sa.Uuid, nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_status", sa.Integer, nullable=True),
        sa.Column("last_error", sa.String(200), nullable=True),
        sa.Column(
            "next_attempt_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("state IN ('pending', 'delivered', 'failed')", name="ck_webhook_delivery_state"),
    )
    op.create_index(
        "ix_webhook_delivery_pending",
        "webhook_delivery",
        ["webhook_id", "session_id", "event_ms", "event_seq"],
        postgresql_where=sa.text("state = 'pending'"),
    )
    op.create_index(
        "ix_webhook_delivery_listing", "webhook_delivery", ["webhook_id", "event_ms", "event_seq"]
    )
    op.create_index("ix_webhook_delivery_updated_at", "webhook_delivery", ["updated_at"])
    op.create_table(
        "webhook_cursor",
        sa.Column("partition", sa.String(32), primary_key=True),
        sa.Column("cursor", sa.String(48), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )


def downgrade() -> None:
    op.drop_table("webhook_cursor")
    op.drop_table("webhook_delivery")
    op.drop_table("webhook")
