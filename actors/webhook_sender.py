"""One delivery attempt: an HTTP POST of the event's frame, signed as Standard Webhooks says.

Headers `webhook-id` (the event's id: the same on every retry, for the receiver to drop copies),
`webhook-timestamp` (this attempt) and `webhook-signature` (`v1,<base64 HMAC-SHA256>`, by the
`standardwebhooks` package). Safety, each attempt:
- the host is resolved once and every address it resolves to must be allowed (`kernel.webhook_urls`);
  the connection goes to that address (the URL's host stays in `Host` and in TLS's SNI and certificate
  check), so a DNS answer that changes between the check and the connection cannot redirect it;
- redirects are not followed (a 3xx is a failed attempt), environment proxies are ignored;
- the whole attempt is bounded by the timeout, and only an excerpt of the reply's first bytes is kept.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
from standardwebhooks.webhooks import Webhook

from kernel.webhook_urls import UrlNotAllowed, parse, resolve
from kernel.webhooks import DueDelivery, excerpt

log = logging.getLogger(__name__)

EXCERPT_BYTES = 512
USER_AGENT = "whatsapp-bridge-webhooks/1"


@dataclass(frozen=True, slots=True)
class Attempt:
    """What an attempt got: a status (None: no reply), and an error text or the reply's excerpt."""

    ok: bool
    status: int | None
    error: str | None


class Sender:
    """Sends deliveries; keeps one connection pool per webhook (its own TLS name; a slow receiver's
    connections never keep another webhook waiting for one)."""

    def __init__(self, *, allow_private: bool, timeout_s: float) -> None:
        self._allow_private = allow_private
        self._timeout_s = timeout_s
        self._clients: dict[str, httpx.AsyncClient] = {}

    async def send(self, delivery: DueDelivery) -> Attempt:
        try:
            async with asyncio.timeout(self._timeout_s):
                return await self._send(delivery)
        except TimeoutError:
            return Attempt(False, None, f"timed out after {self._timeout_s:g} s")
        except UrlNotAllowed as err:
            return Attempt(False, None, f"address_not_allowed: {err}")
        except (httpx.HTTPError, OSError) as err:
            return Attempt(False, None, excerpt(f"{type(err).__name__}: {err}"))

    async def _send(self, delivery: DueDelivery) -> Attempt:
        target = parse(delivery.url, allow_private=self._allow_private)
        address = await resolve(target.host, target.port, allow_private=self._allow_private)
        pinned = f"[{address}]" if isinstance(address, ipaddress.IPv6Address) else str(address)
        now = datetime.now(UTC)
        body = delivery.body.encode()
        signature = Webhook(delivery.secret).sign(delivery.event_id, now, body)
        host_header = target.host if target.port in (80, 443) else f"{target.host}:{target.port}"
        headers = {
            "host": host_header,
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "webhook-id": delivery.event_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signature,
        }
        client = self._client(delivery.webhook_id)
        request = client.build_request(
            "POST",
            f"{target.scheme}://{pinned}:{target.port}{target.path}",
            content=body,
            headers=headers,
            extensions={"sni_hostname": target.host},
        )
        response = await client.send(request, stream=True)
        try:
            got = b""
            async for chunk in response.aiter_raw():
                got += chunk
                if len(got) >= EXCERPT_BYTES:
                    break
        finally:
            await response.aclose()
        ok = 200 <= response.status_code < 300
        text = excerpt(got[:EXCERPT_BYTES].decode(errors="replace"))
        return Attempt(ok, response.status_code, None if ok else (text or f"HTTP {response.status_code}"))

    def _client(self, webhook_id: str) -> httpx.AsyncClient:
        client = self._clients.get(webhook_id)
        if client is None:
            client = httpx.AsyncClient(
                follow_redirects=False,
                trust_env=False,
                timeout=httpx.Timeout(self._timeout_s),
                limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
            )
            self._clients[webhook_id] = client
        return client

    async def close(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()
