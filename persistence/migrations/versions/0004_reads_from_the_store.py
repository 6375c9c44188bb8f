"""Reads from the store: each session process's heartbeat (and live fields), and cached picture bytes.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _session_fk() -> sa.Column[Any]:
    return sa.Column(
        "session_id", sa.Uuid, sa.ForeignKey("whatsapp_session.id", ondelete="CASCADE"), primary_key=True
    )


def upgrade() -> None:
    op.create_table(
        "session_heartbeat",
        _session_fk(),
        sa.Column("process", sa.String(32), nullable=False),
        sa.Column("beat_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("connected", sa.Boolean, nullable=False),
        sa.Column("qr", sa.String, nullable=True),
        sa.Column("qr_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("pairing_code", sa.String(16), nullable=True),
    )
    op.create_table(
        "picture_cache",
        _session_fk(),
        sa.Column("chat_id", sa.String(128), primary_key=True),
        sa.Column("picture_key", sa.String, nullable=False),
        sa.Column("mimetype", sa.String(64), nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )


def downgrade() -> None:
    op.drop_table("picture_cache")
    op.drop_table("session_heartbeat")
