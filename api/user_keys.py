"""Who is calling: the admin key (WHATSAPP_BRIDGE_API_KEY) or one user's own key.

A user key is `wab_<id>_<secret>`: `id` (16 hex digits) names its row, `secret` (43 url-safe characters,
256 random bits) is never stored. The row keeps HMAC-SHA256 of `"{id}.{secret}"` under a server secret
(USER_KEY_SECRET, else one derived from the admin key), so a copy of the database alone neither holds
nor lets anyone test a key; the presented hash is compared in constant time.

A key is checked against the database on every request and nothing is cached beyond it: revoking
(deleting the row) refuses the key from the next request on, on every API process. A key's
`lastUsedAt` is written at most once a minute (`persistence.user_keys.touch_key`).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from api.auth import api_key_matches
from api.database import Database
from kernel.errors import Unauthorized, WaError
from kernel.settings import Settings
from persistence import user_keys

log = logging.getLogger(__name__)

PREFIX = "wab"
_ID_HEX = 16
_HASH_LABEL = b"whatsapp-bridge/user-key-hash/v1"


@dataclass(frozen=True, slots=True)
class Caller:
    """The admin (any user through X-User-Id, and the admin routes) or one user through their own key."""

    admin: bool
    user_id: str | None = None  # the key's user; None for the admin key
    key_id: str | None = None


ADMIN = Caller(admin=True)


@dataclass(frozen=True, slots=True)
class NewKey:
    id: str
    key: str
    key_hash: bytes


def _parse(presented: str) -> tuple[str, str] | None:
    """(id, secret) of something shaped like a user key; None for anything else."""
    prefix, sep, rest = presented.partition("_")
    key_id, sep2, secret = rest.partition("_")
    if prefix != PREFIX or not sep or not sep2 or len(key_id) != _ID_HEX or not secret:
        return None
    if any(c not in "0123456789abcdef" for c in key_id) or len(secret) > 128:
        return None
    return key_id, secret


@dataclass(frozen=True, slots=True)
class UserKeys:
    """Makes user keys and checks presented ones."""

    settings: Settings
    db: Database
    pepper: bytes

    @classmethod
    def create(cls, settings: Settings, db: Database) -> UserKeys:
        root = (
            settings.user_key_secret.get_secret_value()
            if settings.user_key_secret is not None
            else settings.api_key()
        )
        return cls(settings, db, hmac.new(root.encode(), _HASH_LABEL, hashlib.sha256).digest())

    def _hash(self, key_id: str, secret: str) -> bytes:
        return hmac.new(self.pepper, f"{key_id}.{secret}".encode(), hashlib.sha256).digest()

    def new(self) -> NewKey:
        """A fresh key and the hash to store for it (the key itself is shown once, then forgotten)."""
        key_id, secret = secrets.token_hex(_ID_HEX // 2), secrets.token_urlsafe(32)
        return NewKey(key_id, f"{PREFIX}_{key_id}_{secret}", self._hash(key_id, secret))

    async def identify(self, presented: str | None) -> Caller:
        """Who `presented` (an X-API-Key value) is; Unauthorized for a missing, wrong or revoked key."""
        if not presented:
            raise Unauthorized()
        if api_key_matches(self.settings, presented):
            return ADMIN
        parsed = _parse(presented)
        if parsed is None:
            raise Unauthorized()
        key_id, secret = parsed
        found = await self.db.run(user_keys.find_key, key_id)
        # Hashed either way, so that an unknown id takes as long as a wrong secret.
        expected = self._hash(key_id, secret)
        if found is None or not hmac.compare_digest(found.key_hash, expected):
            raise Unauthorized()
        if user_keys.due_for_touch(found.last_used_at, datetime.now(UTC)):
            await self._touch(key_id)
        return Caller(admin=False, user_id=found.user_id, key_id=key_id)

    async def _touch(self, key_id: str) -> None:
        try:
            await self.db.run(user_keys.touch_key, key_id)
        except WaError as err:  # the key was valid: not noting its use must not refuse the request
            log.warning("could not note the use of key %s: %s", key_id, err.code)
