"""Search over a user's chats and messages: a trigram index on chats' names, a full-text index on
messages' words (GIN). Numbers are searched within the user's numbers' chats (their own key): a trigram
index on chat ids was measured and not chosen by the planner at 20,000 chats per number.

Built inside the migration's one transaction (its advisory lock serialises runs; CONCURRENTLY cannot run
in a transaction): on a long history, writes to `message` wait while the index builds.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# persistence.rows.MESSAGE_WORDS, as it was when this revision was written.
_WORDS = "to_tsvector('simple'::regconfig, (COALESCE(text, '') || ' ') || COALESCE(summary, ''))"
_INDEXES = (
    ("ix_chat_name_trgm", "chat", "gin (name gin_trgm_ops)"),
    ("ix_message_words", "message", f"gin (({_WORDS}))"),
)


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for name, table, using in _INDEXES:
        op.execute(f"CREATE INDEX {name} ON {table} USING {using}")


def downgrade() -> None:
    for name, _, _ in _INDEXES:
        op.drop_index(name)
