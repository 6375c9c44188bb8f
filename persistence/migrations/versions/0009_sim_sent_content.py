"""The simulated network records the location, contact card or poll a session sent.

Revision ID: 0009
Revises: 0006
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("sent", sa.Column("content", JSONB, nullable=True), schema="wa_sim")


def downgrade() -> None:
    op.drop_column("sent", "content", schema="wa_sim")
