"""Who is calling: the API key (constant-time compare) and the short-lived WebSocket tokens.

A WebSocket token is `base64url({"user", "exp"}) "." base64url(HMAC-SHA256)`, signed with a key derived
from the API key: it names one user, expires after WS_TOKEN_TTL_S, and cannot be forged without the key.
The API key itself never appears in a token, a log line or a response.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from dataclasses import dataclass

from kernel.settings import Settings

_TOKEN_KEY_LABEL = b"whatsapp-bridge/ws-token/v1"


def api_key_matches(settings: Settings, provided: str | None) -> bool:
    """True if `provided` is the configured key. No key configured: nothing matches (fail closed)."""
    key = settings.whatsapp_bridge_api_key
    if not provided or key is None or not key.get_secret_value():
        return False
    return hmac.compare_digest(provided.encode(), settings.api_key().encode())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class WsTokens:
    """Mints and checks WebSocket tokens."""

    key: bytes
    ttl_s: int

    @classmethod
    def from_settings(cls, settings: Settings) -> WsTokens:
        """Tokens signed with a key derived from the admin key; RuntimeError when there is none (never an
        empty secret anyone could sign with)."""
        secret = settings.api_key().encode()
        return cls(hmac.new(secret, _TOKEN_KEY_LABEL, hashlib.sha256).digest(), settings.ws_token_ttl_s)

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self.key, payload.encode(), hashlib.sha256).digest())

    def mint(self, user_id: str, now: float | None = None) -> tuple[str, int]:
        """A token for `user_id` and its expiry (Unix seconds)."""
        exp = int(now if now is not None else time.time()) + self.ttl_s
        payload = _b64(json.dumps({"user": user_id, "exp": exp}, separators=(",", ":")).encode())
        return f"{payload}.{self._sign(payload)}", exp

    def verify(self, token: str, now: float | None = None) -> str | None:
        """The user a valid, unexpired token names; None for anything else."""
        found = self.check(token, now)
        return found[0] if found is not None else None

    def check(self, token: str, now: float | None = None) -> tuple[str, int] | None:
        """The user and expiry (Unix seconds) of a valid, unexpired token; None for anything else."""
        payload, sep, signature = token.partition(".")
        if not sep or not hmac.compare_digest(signature.encode(), self._sign(payload).encode()):
            return None
        try:
            claims = json.loads(_unb64(payload))
        except (ValueError, binascii.Error):
            return None
        if not isinstance(claims, dict):
            return None
        user, exp = claims.get("user"), claims.get("exp")
        if not isinstance(user, str) or not user or type(exp) is not int:
            return None
        if exp <= (now if now is not None else time.time()):
            return None
        return user, exp
