"""Drains and rebalances as rows the registry carries out, so that they outlive any process.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "fleet_operation",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("node_id", sa.String(64), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("forced", sa.Boolean, nullable=False),
        sa.Column("planned", sa.Integer, nullable=False),
        sa.Column("left_count", sa.Integer, nullable=False),
        sa.Column("moved", JSONB, nullable=False, server_default="[]"),
        sa.Column("waiting", JSONB, nullable=False, server_default="[]"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("kind IN ('drain', 'rebalance')", name="ck_fleet_operation_kind"),
        sa.CheckConstraint("state IN ('running', 'done', 'cancelled')", name="ck_fleet_operation_state"),
    )
    op.create_index(
        "uq_fleet_operation_one_rebalance",
        "fleet_operation",
        ["kind"],
        unique=True,
        postgresql_where=sa.text("kind = 'rebalance' AND state = 'running'"),
    )
    op.create_index(
        "uq_fleet_operation_one_drain_per_node",
        "fleet_operation",
        ["node_id"],
        unique=True,
        postgresql_where=sa.text("kind = 'drain' AND state IN ('running', 'done')"),
    )


def downgrade() -> None:
    op.drop_table("fleet_operation")
