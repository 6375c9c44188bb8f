"""Webhooks: a user registers receivers of their events; the dispatchers (actors.webhook_dispatcher)
deliver them. User-scoped like sessions."""

from __future__ import annotations

import base64
import secrets
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from api.deps import Resources, UserId
from api.errors import error_responses
from api.schemas.webhooks import DeliveryOut, DeliveryPage, WebhookCreatedOut, WebhookIn, WebhookOut
from kernel import webhook_urls
from kernel.webhooks import WebhookUrlNotAllowed
from kernel.wire import iso
from persistence import webhooks
from persistence.webhooks import StoredWebhook

router = APIRouter(tags=["webhooks"])

SECRET_BYTES = 32
MAX_PAGE = 200
WebhookId = Annotated[str, Path(alias="id", max_length=64)]


def _out(hook: StoredWebhook) -> WebhookOut:
    return WebhookOut(
        id=hook.id,
        url=hook.url,
        events=hook.events,
        session_id=hook.session_id,
        created_at=iso(hook.created_at) or "",
    )


@router.post(
    "/webhooks",
    status_code=status.HTTP_201_CREATED,
    response_model=WebhookCreatedOut,
    responses=error_responses(400, 404),
)
async def create_webhook(body: WebhookIn, res: Resources, user: UserId) -> WebhookCreatedOut:
    """Register a receiver; its `secret` is shown only here. 400 `webhook_url_not_allowed` for a URL that
    is not https or resolves to a loopback, private, link-local or reserved address."""
    allow = res.settings.webhook_allow_private_urls
    try:
        await webhook_urls.check(body.url, allow_private=allow)
    except webhook_urls.UrlNotAllowed as err:
        raise WebhookUrlNotAllowed(str(err)) from None
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()
    events: list[str] | None = list(dict.fromkeys(body.events)) if body.events else None
    hook = await res.db.run(webhooks.create, user, body.url, events, body.session_id, secret)
    return WebhookCreatedOut(**_out(hook).model_dump(), secret=secret)


@router.get("/webhooks", response_model=list[WebhookOut], responses=error_responses(400))
async def list_webhooks(res: Resources, user: UserId) -> list[WebhookOut]:
    """The user's webhooks (never their secrets)."""
    return [_out(h) for h in await res.db.run(webhooks.list_for, user)]


@router.delete("/webhooks/{id}", status_code=status.HTTP_204_NO_CONTENT, responses=error_responses(400, 404))
async def delete_webhook(webhook_id: WebhookId, res: Resources, user: UserId) -> Response:
    """Delete the webhook and its deliveries: nothing more is sent to it."""
    await res.db.run(webhooks.delete, user, webhook_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/webhooks/{id}/deliveries", response_model=DeliveryPage, responses=error_responses(400, 404))
async def list_deliveries(
    webhook_id: WebhookId,
    res: Resources,
    user: UserId,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Items per page")] = 50,
    cursor: Annotated[
        str | None, Query(max_length=48, description="`nextCursor` of the previous page")
    ] = None,
) -> DeliveryPage:
    """The webhook's deliveries, newest event first: pending (with when the next attempt is), delivered,
    failed (retried for WEBHOOK_RETRY_FOR_S), each with its attempts and the last status or error."""
    items, next_cursor = await res.db.run(webhooks.deliveries, user, webhook_id, limit, cursor)
    return DeliveryPage(
        items=[
            DeliveryOut(
                event_id=d.event_id,
                type=d.type,
                state=d.state,
                attempts=d.attempts,
                last_status=d.last_status,
                last_error=d.last_error,
                next_attempt_at=iso(d.next_attempt_at),
            )
            for d in items
        ],
        next_cursor=next_cursor,
    )
