"""Initial schema: sessions, users, chats, messages; the whatsmeow and wa_sim schemas.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts(name: str, *, nullable: bool, now: bool = False) -> sa.Column[object]:
    return sa.Column(
        name, sa.DateTime(timezone=True), nullable=nullable, server_default=sa.func.now() if now else None
    )


def upgrade() -> None:
    # whatsmeow creates its own tables in this schema on first use (lib/pq with search_path=whatsmeow).
    op.execute("CREATE SCHEMA IF NOT EXISTS whatsmeow")
    op.execute("CREATE SCHEMA IF NOT EXISTS wa_sim")

    op.create_table(
        "app_user",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("whatsapp_phone", sa.String(20), nullable=True),
        _ts("created_at", nullable=False, now=True),
        _ts("updated_at", nullable=False, now=True),
    )

    op.create_table(
        "whatsapp_session",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("slot", sa.SmallInteger(), nullable=False),
        sa.Column("phone", sa.String(20), nullable=True),
        sa.Column("display_name", sa.String(256), nullable=True),
        sa.Column("profile_pic_url", sa.String(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(16), nullable=True),
        sa.Column("device_jid", sa.String(128), nullable=True),
        sa.Column("qr_rounds", sa.SmallInteger(), nullable=False, server_default="0"),
        sa.Column("connect_failures", sa.SmallInteger(), nullable=False, server_default="0"),
        _ts("last_seen", nullable=True),
        _ts("created_at", nullable=False, now=True),
        _ts("updated_at", nullable=False, now=True),
        sa.UniqueConstraint("user_id", "slot", name="uq_session_user_slot"),
        sa.UniqueConstraint("phone", name="uq_session_phone"),
        sa.CheckConstraint("slot >= 1", name="ck_session_slot_positive"),
    )
    op.create_index("ix_session_user_id", "whatsapp_session", ["user_id"])

    op.create_table(
        "chat",
        sa.Column(
            "session_id",
            sa.Uuid(),
            sa.ForeignKey("whatsapp_session.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("name", sa.String(), nullable=True),
        sa.Column("is_group", sa.Boolean(), nullable=False),
        sa.Column("unread_count", sa.Integer(), nullable=False),
        _ts("last_message_at", nullable=True),
        sa.Column("last_message_id", sa.String(128), nullable=True),
    )
    op.create_index(
        "ix_chat_recency",
        "chat",
        ["session_id", sa.text("last_message_at DESC NULLS LAST"), sa.text("id DESC")],
    )

    op.create_table(
        "message",
        sa.Column(
            "session_id",
            sa.Uuid(),
            sa.ForeignKey("whatsapp_session.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("chat_id", sa.String(128), primary_key=True),
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("sender", sa.String(128), nullable=False),
        sa.Column("sender_alt", sa.String(128), nullable=True),
        sa.Column("sender_name", sa.String(), nullable=True),
        sa.Column("from_me", sa.Boolean(), nullable=False),
        _ts("ts", nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("text", sa.String(), nullable=True),
        sa.Column("media", JSONB(), nullable=True),
        sa.Column("media_ref", JSONB(), nullable=True),
        sa.Column("quoted_id", sa.String(128), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
    )
    op.create_index(
        "ix_message_page", "message", ["session_id", "chat_id", sa.text("ts DESC"), sa.text("id DESC")]
    )
    op.create_index("ix_message_retention", "message", ["ts"])

    op.create_table(
        "device",
        sa.Column("jid", sa.String(128), primary_key=True),
        sa.Column("session_id", sa.Uuid(), nullable=False),
        sa.Column("phone", sa.String(20), nullable=False),
        sa.Column("push_name", sa.String(), nullable=True),
        _ts("created_at", nullable=False, now=True),
        schema="wa_sim",
    )
    op.create_index("ix_wa_sim_device_session_id", "device", ["session_id"], schema="wa_sim")

    op.create_table(
        "sent",
        sa.Column("seq", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("session_id", sa.Uuid(), nullable=False),
        sa.Column("message_id", sa.String(128), nullable=False),
        sa.Column("to", sa.String(128), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("mimetype", sa.String(), nullable=True),
        sa.Column("ptt", sa.Boolean(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=True),
        sa.Column("seconds", sa.Integer(), nullable=True),
        sa.Column("file_name", sa.String(), nullable=True),
        sa.Column("text", sa.String(), nullable=True),
        sa.Column("quoted_id", sa.String(), nullable=True),
        sa.Column("data", sa.LargeBinary(), nullable=True),
        _ts("created_at", nullable=False, now=True),
        schema="wa_sim",
    )
    op.create_index("ix_sim_sent_session", "sent", ["session_id", "seq"], schema="wa_sim")


def downgrade() -> None:
    op.drop_table("sent", schema="wa_sim")
    op.drop_table("device", schema="wa_sim")
    op.drop_table("message")
    op.drop_table("chat")
    op.drop_table("whatsapp_session")
    op.drop_table("app_user")
    # The schemas stay: whatsmeow's holds device keys this migration never created.
