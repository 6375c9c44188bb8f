"""A proxy per number: `whatsapp_session.proxy_url` (no password) and `session_proxy_secret`.

`reason` widens to 32 characters for the proxy reasons (`proxy_unreachable`, `proxy_auth_failed`).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.alter_column(
        "whatsapp_session", "reason", type_=sa.String(32), existing_type=sa.String(16), existing_nullable=True
    )
    op.add_column("whatsapp_session", sa.Column("proxy_url", sa.String(512), nullable=True))
    op.create_table(
        "session_proxy_secret",
        sa.Column(
            "session_id",
            sa.Uuid(),
            sa.ForeignKey("whatsapp_session.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("password", sa.String(1024), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("session_proxy_secret")
    op.drop_column("whatsapp_session", "proxy_url")
    op.execute("UPDATE whatsapp_session SET reason = 'error' WHERE length(reason) > 16")
    op.alter_column(
        "whatsapp_session", "reason", type_=sa.String(16), existing_type=sa.String(32), existing_nullable=True
    )
