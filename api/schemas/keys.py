"""Users' own API keys and who is calling (`/users/{userId}/keys`, `/me`)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from api.schemas.common import ApiModel, Timestamp

KeyName = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$")]


class KeyIn(ApiModel):
    name: KeyName | None = None


class KeyOut(ApiModel):
    """A key as listed: never the key itself."""

    id: str
    name: str | None
    created_at: Timestamp
    last_used_at: Timestamp | None = Field(description="Noted at most once a minute")


class NewKeyOut(ApiModel):
    """The answer to creating a key: the only time `key` is ever shown."""

    id: str
    name: str | None
    key: str = Field(description="Send it as X-API-Key; only a hash of it is kept, it cannot be shown again")
    created_at: Timestamp


class MeOut(ApiModel):
    user_id: str | None = Field(
        description="The key's user; with the admin key, X-User-Id if given, else null"
    )
    admin: bool = Field(description="True for the admin key (WHATSAPP_BRIDGE_API_KEY)")
