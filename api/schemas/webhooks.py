"""Webhook bodies (DESIGN.md, "Webhooks")."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from api.schemas.common import ApiModel, Id, Timestamp
from kernel.webhook_urls import MAX_URL

FrameType = Literal["message", "status", "qr", "chat", "message_update", "presence"]


class WebhookIn(ApiModel):
    url: str = Field(
        min_length=1,
        max_length=MAX_URL,
        description="https URL of the receiver (http and private addresses only with"
        " WEBHOOK_ALLOW_PRIVATE_URLS=true)",
        examples=["https://example.com/hooks/whatsapp"],
    )
    events: list[FrameType] | None = Field(
        None, min_length=1, max_length=6, description="Frame types to deliver (default: all)"
    )
    session_id: Id | None = Field(None, description="Only this session's events (default: all the user's)")


class WebhookOut(ApiModel):
    id: str
    url: str
    events: list[str] | None
    session_id: str | None
    created_at: Timestamp


class WebhookCreatedOut(WebhookOut):
    secret: str = Field(
        description="`whsec_…`: the key of the `webhook-signature` HMAC; shown only in this answer"
    )


class DeliveryOut(ApiModel):
    event_id: str = Field(description="The event's id: its frame's `cursor` and the `webhook-id` header")
    type: str
    state: Literal["pending", "delivered", "failed"]
    attempts: int
    last_status: int | None = Field(description="The receiver's last HTTP status (null: no answer)")
    last_error: str | None = Field(description="What went wrong last (an excerpt of the reply, or why)")
    next_attempt_at: Timestamp | None


class DeliveryPage(ApiModel):
    items: list[DeliveryOut]
    next_cursor: str | None
