"""The bridge's tables (SQLModel). Alembic migrations in `persistence/migrations` create exactly these.

Schemas: the bridge's tables live in `public`; whatsmeow's auth tables in `whatsmeow` (created empty by
our migration, filled by whatsmeow itself); the simulated network's device store in `wa_sim`.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Column, Field, SQLModel

from persistence.rows import MESSAGE_WORDS

AUTH_SCHEMA = "whatsmeow"
SIM_SCHEMA = "wa_sim"


def utcnow() -> datetime:
    return datetime.now(UTC)


def _ts(**kw: Any) -> Any:
    return Field(sa_column=Column(sa.DateTime(timezone=True), **kw))


class WhatsAppSession(SQLModel, table=True):
    """One WhatsApp number of one user. `device_jid` is set once paired and cleared on logout; `phone`
    stays while unlinked (a re-link by another phone starts the slot afresh)."""

    __tablename__ = "whatsapp_session"
    __table_args__ = (
        sa.UniqueConstraint("user_id", "slot", name="uq_session_user_slot"),
        # One linked session per phone; an unlinked one keeps its last phone (to say which to scan).
        sa.Index(
            "uq_session_phone", "phone", unique=True, postgresql_where=sa.text("device_jid IS NOT NULL")
        ),
        sa.CheckConstraint("slot >= 1", name="ck_session_slot_positive"),
        sa.Index("ix_session_user_id", "user_id"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    user_id: str = Field(max_length=128, nullable=False)
    slot: int = Field(sa_column=Column(sa.SmallInteger, nullable=False))
    phone: str | None = Field(default=None, max_length=20)  # E.164 with "+"
    display_name: str | None = Field(default=None, max_length=256)
    profile_pic_url: str | None = Field(default=None)
    status: str = Field(default="disconnected", max_length=16, nullable=False)
    reason: str | None = Field(default=None, max_length=32)
    # The number's proxy without its password (kernel.proxy: `ProxySettings.public`); the password is in
    # `session_proxy_secret`, which only the session's own store reads.
    proxy_url: str | None = Field(default=None, max_length=512)
    device_jid: str | None = Field(default=None, max_length=128)
    # Pairing rounds used since the last pairing request; bounded by QR_MAX_ROUNDS across restarts.
    qr_rounds: int = Field(default=0, sa_column=Column(sa.SmallInteger, nullable=False, server_default="0"))
    # Failed dials in a row (reset when connected); sets the backoff before the next process retries.
    connect_failures: int = Field(
        default=0, sa_column=Column(sa.SmallInteger, nullable=False, server_default="0")
    )
    last_seen: datetime | None = _ts(nullable=True)
    created_at: datetime = _ts(nullable=False, server_default=sa.func.now())
    updated_at: datetime = _ts(nullable=False, server_default=sa.func.now())


class AppUser(SQLModel, table=True):
    """A user of the web inbox, known by the X-User-Id it sends; holds the onboarding phone."""

    __tablename__ = "app_user"

    id: str = Field(primary_key=True, max_length=128)
    whatsapp_phone: str | None = Field(default=None, max_length=20)  # E.164
    created_at: datetime = _ts(nullable=False, server_default=sa.func.now())
    updated_at: datetime = _ts(nullable=False, server_default=sa.func.now())


class Chat(SQLModel, table=True):
    __tablename__ = "chat"
    __table_args__ = (
        sa.Index(
            "ix_chat_recency", "session_id", sa.text("last_message_at DESC NULLS LAST"), sa.text("id DESC")
        ),
        # Searching chats by a part of a name (persistence.inbox_search): a trigram index.
        sa.Index(
            "ix_chat_name_trgm", "name", postgresql_using="gin", postgresql_ops={"name": "gin_trgm_ops"}
        ),
    )

    session_id: uuid.UUID = Field(
        sa_column=Column(sa.Uuid, sa.ForeignKey("whatsapp_session.id", ondelete="CASCADE"), primary_key=True)
    )
    id: str = Field(primary_key=True, max_length=128)  # chat JID
    name: str | None = None
    is_group: bool = Field(default=False, nullable=False)
    unread_count: int = Field(default=0, nullable=False)
    last_message_at: datetime | None = _ts(nullable=True)
    last_message_id: str | None = Field(default=None, max_length=128)
    # Where `name` came from: "contact" (address book) > "push" (their own) > "subject" (group) > none.
    name_source: str | None = Field(default=None, max_length=16)
    picture_id: str | None = Field(default=None, max_length=64)
    picture_url: str | None = None  # WhatsApp's CDN link as last fetched; it expires
    picture_checked_at: datetime | None = _ts(nullable=True)


# The trigram operator classes come from pg_trgm (migration 0012 creates it; so does create_all).
sa.event.listen(
    Chat.__table__,  # type: ignore[attr-defined]
    "before_create",
    sa.DDL("CREATE EXTENSION IF NOT EXISTS pg_trgm"),  # type: ignore[no-untyped-call]
)


class Message(SQLModel, table=True):
    __tablename__ = "message"
    __table_args__ = (
        sa.Index("ix_message_page", "session_id", "chat_id", sa.text("ts DESC"), sa.text("id DESC")),
        sa.Index("ix_message_retention", "ts"),
        # Searching messages by their words (persistence.inbox_search, persistence.message_search).
        sa.Index("ix_message_words", sa.text(MESSAGE_WORDS), postgresql_using="gin"),
    )

    session_id: uuid.UUID = Field(
        sa_column=Column(sa.Uuid, sa.ForeignKey("whatsapp_session.id", ondelete="CASCADE"), primary_key=True)
    )
    chat_id: str = Field(primary_key=True, max_length=128)
    id: str = Field(primary_key=True, max_length=128)
    sender: str = Field(max_length=128, nullable=False)
    sender_alt: str | None = Field(default=None, max_length=128)
    sender_name: str | None = None
    from_me: bool = Field(default=False, nullable=False)
    ts: datetime = _ts(nullable=False)
    type: str = Field(default="text", max_length=16, nullable=False)
    text: str | None = None
    media: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONB, nullable=True))
    media_ref: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONB, nullable=True))
    quoted_id: str | None = Field(default=None, max_length=128)
    status: str = Field(default="sent", max_length=16, nullable=False)
    summary: str | None = None
    edited_at: datetime | None = _ts(nullable=True)
    reactions: list[dict[str, Any]] | None = Field(default=None, sa_column=Column(JSONB, nullable=True))
    # Kind-specific content: {"location": {...}} | {"contacts": [...]} | {"poll": {...}}.
    content: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONB, nullable=True))
    view_once: bool = Field(
        default=False, sa_column=Column(sa.Boolean, nullable=False, server_default=sa.false())
    )


class IdentityLink(SQLModel, table=True):
    """A contact's LID and phone-number JIDs, as WhatsApp revealed them: one chat for both."""

    __tablename__ = "identity_link"
    __table_args__ = (sa.Index("ix_identity_link_pn", "session_id", "pn"),)

    session_id: uuid.UUID = Field(
        sa_column=Column(sa.Uuid, sa.ForeignKey("whatsapp_session.id", ondelete="CASCADE"), primary_key=True)
    )
    lid: str = Field(primary_key=True, max_length=128)
    pn: str = Field(max_length=128, nullable=False)


class SessionLease(SQLModel, table=True):
    """Who may hold a session's WhatsApp connection now (`actors.lease`): the fencing token.

    `generation` grows by one at every take; a process's writes are checked against the generation it
    took. `owner` is the Ray actor that took it (a newer process of the same actor takes it over at
    once); another owner takes it only once `expires_at` (database clock) has passed.
    """

    __tablename__ = "session_lease"

    session_id: uuid.UUID = Field(
        sa_column=Column(sa.Uuid, sa.ForeignKey("whatsapp_session.id", ondelete="CASCADE"), primary_key=True)
    )
    generation: int = Field(sa_column=Column(sa.BigInteger, nullable=False))
    owner: str = Field(max_length=64, nullable=False)
    expires_at: datetime = _ts(nullable=False)


class SessionHeartbeat(SQLModel, table=True):
    """What a session's process says of itself, renewed while it runs (`actors.heartbeat`).

    The process is up while `beat_until` is ahead of the database's clock; `connected`: it holds the
    WhatsApp connection. `qr` and `pairing_code` are what it shows now (the status route's live fields).
    """

    __tablename__ = "session_heartbeat"

    session_id: uuid.UUID = Field(
        sa_column=Column(sa.Uuid, sa.ForeignKey("whatsapp_session.id", ondelete="CASCADE"), primary_key=True)
    )
    process: str = Field(max_length=32, nullable=False)  # which process beat last (a random token)
    beat_until: datetime = _ts(nullable=False)
    connected: bool = Field(nullable=False)
    qr: str | None = None
    qr_expires_at: datetime | None = _ts(nullable=True)
    pairing_code: str | None = Field(default=None, max_length=16)


class SessionProxySecret(SQLModel, table=True):
    """The password of a number's proxy, apart from the row every read selects: only the session's own
    store reads it (to dial), no API read ever does. Stored as given (see README, "A proxy per number")."""

    __tablename__ = "session_proxy_secret"

    session_id: uuid.UUID = Field(
        sa_column=Column(sa.Uuid, sa.ForeignKey("whatsapp_session.id", ondelete="CASCADE"), primary_key=True)
    )
    password: str = Field(max_length=1024, nullable=False)


class PictureCache(SQLModel, table=True):
    """The bytes of a chat's (or our own) picture as last downloaded, so the API serves it without the
    session's process. `picture_key`: WhatsApp's picture id (our own picture: its link)."""

    __tablename__ = "picture_cache"

    session_id: uuid.UUID = Field(
        sa_column=Column(sa.Uuid, sa.ForeignKey("whatsapp_session.id", ondelete="CASCADE"), primary_key=True)
    )
    chat_id: str = Field(primary_key=True, max_length=128)
    picture_key: str = Field(nullable=False)
    mimetype: str = Field(max_length=64, nullable=False)
    data: bytes = Field(sa_column=Column(sa.LargeBinary, nullable=False))
    fetched_at: datetime = _ts(nullable=False, server_default=sa.func.now())


class SendRecord(SQLModel, table=True):
    """A send made with an Idempotency-Key: a retry with the same key (per user, 24 h) gets this result.

    `message_id` null: the send was started and its outcome is unknown (the process died during it).
    """

    __tablename__ = "send_record"
    __table_args__ = (sa.Index("ix_send_record_created", "created_at"),)

    user_id: str = Field(primary_key=True, max_length=128)
    key: str = Field(primary_key=True, max_length=128)
    session_id: uuid.UUID = Field(
        sa_column=Column(sa.Uuid, sa.ForeignKey("whatsapp_session.id", ondelete="CASCADE"), nullable=False)
    )
    fingerprint: str = Field(max_length=64, nullable=False)
    message_id: str | None = Field(default=None, max_length=128)
    sent_at: datetime | None = _ts(nullable=True)
    created_at: datetime = _ts(nullable=False, server_default=sa.func.now())


class SimDevice(SQLModel, table=True):
    """The simulated network's device credentials (its stand-in for `whatsmeow_device`)."""

    __tablename__ = "device"
    __table_args__ = ({"schema": SIM_SCHEMA},)

    jid: str = Field(primary_key=True, max_length=128)
    session_id: uuid.UUID = Field(sa_column=Column(sa.Uuid, nullable=False, index=True))
    phone: str = Field(max_length=20, nullable=False)
    push_name: str | None = None
    created_at: datetime = _ts(nullable=False, server_default=sa.func.now())


class SimSent(SQLModel, table=True):
    """What the simulated network received from a session (served by GET /simulator/.../sent)."""

    __tablename__ = "sent"
    __table_args__ = (sa.Index("ix_sim_sent_session", "session_id", "seq"), {"schema": SIM_SCHEMA})

    seq: int | None = Field(default=None, sa_column=Column(sa.BigInteger, sa.Identity(), primary_key=True))
    session_id: uuid.UUID = Field(sa_column=Column(sa.Uuid, nullable=False))
    message_id: str = Field(max_length=128)
    to: str = Field(max_length=128)
    type: str = Field(max_length=16)
    mimetype: str | None = None
    ptt: bool = False
    size: int | None = None
    seconds: int | None = None
    file_name: str | None = None
    text: str | None = None  # text, or the caption of media
    quoted_id: str | None = None
    data: bytes | None = Field(default=None, sa_column=Column(sa.LargeBinary, nullable=True))  # media bytes
    # A location, contact card or poll (`kernel.message_kinds.content_json`).
    content: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONB, nullable=True))
    created_at: datetime = _ts(nullable=False, server_default=sa.func.now())


class FleetOperation(SQLModel, table=True):
    """A drain or a rebalance an operator asked for; the registry carries it out (`actors.operations`).

    A drain is in force while `running` or `done` (its node takes no new session) until `cancelled`.
    At most one rebalance runs, and one drain per node is in force, cluster-wide (partial unique indexes).
    """

    __tablename__ = "fleet_operation"
    __table_args__ = (
        sa.CheckConstraint("kind IN ('drain', 'rebalance')", name="ck_fleet_operation_kind"),
        sa.CheckConstraint("state IN ('running', 'done', 'cancelled')", name="ck_fleet_operation_state"),
        sa.Index(
            "uq_fleet_operation_one_rebalance",
            "kind",
            unique=True,
            postgresql_where=sa.text("kind = 'rebalance' AND state = 'running'"),
        ),
        sa.Index(
            "uq_fleet_operation_one_drain_per_node",
            "node_id",
            unique=True,
            postgresql_where=sa.text("kind = 'drain' AND state IN ('running', 'done')"),
        ),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    kind: str = Field(max_length=16)
    node_id: str | None = Field(default=None, max_length=64)
    state: str = Field(max_length=16)
    forced: bool = False
    planned: int = 0
    left_count: int = 0
    moved: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSONB, nullable=False, server_default="[]")
    )
    waiting: list[str] = Field(
        default_factory=list, sa_column=Column(JSONB, nullable=False, server_default="[]")
    )
    created_at: datetime = _ts(nullable=False, server_default=sa.func.now())
    updated_at: datetime = _ts(nullable=False, server_default=sa.func.now())
    finished_at: datetime | None = _ts(nullable=True)


class UserApiKey(SQLModel, table=True):
    """A user's own API key (`api.user_keys`): only a keyed hash of it is kept; deleting the row revokes it.

    The key itself is `wab_<id>_<secret>`: the id finds the row, the secret is checked against `key_hash`.
    """

    __tablename__ = "user_api_key"
    __table_args__ = (sa.Index("ix_user_api_key_user_id", "user_id"),)

    id: str = Field(primary_key=True, max_length=32)
    user_id: str = Field(max_length=128)
    name: str | None = Field(default=None, max_length=100)
    key_hash: bytes = Field(sa_column=Column(sa.LargeBinary, nullable=False))
    created_at: datetime = _ts(nullable=False, server_default=sa.func.now())
    last_used_at: datetime | None = _ts(nullable=True)


from persistence.webhook_models import Webhook, WebhookCursor, WebhookDelivery  # noqa: E402  (one metadata)

__all__ = ["Webhook", "WebhookCursor", "WebhookDelivery"]
