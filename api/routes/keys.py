"""Users' own API keys (admin key only) and `GET /me`: who the presented key is."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Path, Response

from api.deps import MAX_USER_ID, CallerDep, Resources, acting_user, check_user_id
from api.errors import error_responses
from api.schemas.keys import KeyIn, KeyOut, MeOut, NewKeyOut
from kernel.errors import KeyNotFound, TooManyKeys
from kernel.wire import JSON, iso
from persistence import user_keys
from persistence.user_keys import StoredKey

router = APIRouter(tags=["users"])
admin_router = APIRouter(tags=["keys"])

PathUserId = Annotated[
    str, Path(alias="userId", min_length=1, max_length=MAX_USER_ID, description="The user the keys act as")
]
KeyId = Annotated[str, Path(alias="keyId", pattern="^[0-9a-f]{16}$", description="The id `POST` answered")]


def _listed(key: StoredKey) -> JSON:
    return {
        "id": key.id,
        "name": key.name,
        "createdAt": iso(key.created_at),
        "lastUsedAt": iso(key.last_used_at),
    }


@router.get("/me", response_model=MeOut, responses=error_responses(403))
async def me(found: CallerDep, x_user_id: Annotated[str | None, Header(alias="X-User-Id")] = None) -> JSON:
    """Who the presented key is: a user's key names its user; the admin key acts as X-User-Id (or none)."""
    if found.admin and x_user_id is None:
        return {"userId": None, "admin": True}
    return {"userId": acting_user(found, x_user_id), "admin": found.admin}


@admin_router.post(
    "/users/{userId}/keys", status_code=201, response_model=NewKeyOut, responses=error_responses(403, 409)
)
async def create_key(user: PathUserId, res: Resources, body: KeyIn | None = None) -> JSON:
    """A new key acting as the user. The answer is the only time the key is shown; keep it."""
    check_user_id(user)
    made = res.keys.new()
    name = body.name if body is not None else None
    stored = await res.db.run(user_keys.create_key, made.id, user, name, made.key_hash)
    if stored is None:
        raise TooManyKeys(limit=user_keys.MAX_KEYS_PER_USER)
    return {"id": stored.id, "name": stored.name, "key": made.key, "createdAt": iso(stored.created_at)}


@admin_router.get("/users/{userId}/keys", response_model=list[KeyOut], responses=error_responses(403))
async def list_keys(user: PathUserId, res: Resources) -> list[JSON]:
    """The user's keys, oldest first; never the keys themselves."""
    check_user_id(user)
    return [_listed(key) for key in await res.db.run(user_keys.list_keys, user)]


@admin_router.delete(
    "/users/{userId}/keys/{keyId}",
    status_code=204,
    response_class=Response,
    responses=error_responses(403, 404),
)
async def delete_key(user: PathUserId, key_id: KeyId, res: Resources) -> Response:
    """Revoke the key: it is refused (401) from the next request on, by every API process."""
    check_user_id(user)
    if not await res.db.run(user_keys.delete_key, user, key_id):
        raise KeyNotFound()
    return Response(status_code=204)
