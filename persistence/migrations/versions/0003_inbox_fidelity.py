"""Inbox fidelity: reactions, edits, revokes, typed message kinds, chat names and pictures, LID links.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("message", sa.Column("summary", sa.String, nullable=True))
    op.add_column("message", sa.Column("edited_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("message", sa.Column("reactions", JSONB, nullable=True))
    # Kind-specific content: {"location": {...}} | {"contacts": [...]} | {"poll": {...}}.
    op.add_column("message", sa.Column("content", JSONB, nullable=True))
    op.add_column("message", sa.Column("view_once", sa.Boolean, nullable=False, server_default=sa.false()))
    op.add_column("chat", sa.Column("name_source", sa.String(16), nullable=True))
    op.add_column("chat", sa.Column("picture_id", sa.String(64), nullable=True))
    op.add_column("chat", sa.Column("picture_url", sa.String, nullable=True))
    op.add_column("chat", sa.Column("picture_checked_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "identity_link",
        sa.Column(
            "session_id",
            sa.Uuid,
            sa.ForeignKey("whatsapp_session.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("lid", sa.String(128), primary_key=True),
        sa.Column("pn", sa.String(128), nullable=False),
    )
    op.create_index("ix_identity_link_pn", "identity_link", ["session_id", "pn"])


def downgrade() -> None:
    op.drop_index("ix_identity_link_pn", table_name="identity_link")
    op.drop_table("identity_link")
    for column in ("picture_checked_at", "picture_url", "picture_id", "name_source"):
        op.drop_column("chat", column)
    for column in ("view_once", "content", "reactions", "edited_at", "summary"):
        op.drop_column("message", column)
