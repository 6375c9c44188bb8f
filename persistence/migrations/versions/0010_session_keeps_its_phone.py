"""A slot belongs to its phone: an unlinked session keeps the phone it was last linked with.

The phone is unique among linked sessions only (a partial unique index instead of the constraint), so
an unlinked session's remembered phone never stops that phone from linking elsewhere.

Revision ID: 0010
Revises: 0006
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_constraint("uq_session_phone", "whatsapp_session", type_="unique")
    op.create_index(
        "uq_session_phone",
        "whatsapp_session",
        ["phone"],
        unique=True,
        postgresql_where=sa.text("device_jid IS NOT NULL"),
    )


def downgrade() -> None:
    # Unlinked sessions forget their phone again, so the constraint holds.
    op.execute("UPDATE whatsapp_session SET phone = NULL WHERE device_jid IS NULL")
    op.drop_index("uq_session_phone", table_name="whatsapp_session")
    op.create_unique_constraint("uq_session_phone", "whatsapp_session", ["phone"])
