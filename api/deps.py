"""FastAPI dependencies: the shared resources, the API key, the calling user, and session ownership."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Header, Path, Security
from fastapi.security import APIKeyHeader
from starlette.requests import HTTPConnection

from api.handles import ActorUnreachable
from api.resources import ApiResources
from api.user_keys import Caller
from kernel.errors import AdminOnly, InvalidInput, MissingUserId, SessionNotFound, UserMismatch

MAX_USER_ID = 128

api_key_header = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    description="WHATSAPP_BRIDGE_API_KEY (the admin key), or a user's own key from POST /users/{userId}/keys",
    scheme_name="ApiKey",
)


async def resources(conn: HTTPConnection) -> ApiResources:
    # async: FastAPI runs a plain `def` dependency in its thread pool, a thread hop on every request.
    found: ApiResources = conn.app.state.api
    return found


Resources = Annotated[ApiResources, Depends(resources)]


async def caller(res: Resources, key: Annotated[str | None, Security(api_key_header)]) -> Caller:
    """Who X-API-Key says is calling (the admin, or a user by their own key); 401 for anything else.

    FastAPI resolves it once per request, however many dependencies ask for it."""
    return await res.keys.identify(key)


CallerDep = Annotated[Caller, Depends(caller)]


async def require_api_key(found: CallerDep) -> None:
    """401 unless X-API-Key is the admin key or a user's key (compared in constant time)."""


async def require_admin(found: CallerDep) -> None:
    """401 without a valid key; 403 `admin_only` for a user's key."""
    if not found.admin:
        raise AdminOnly()


def check_user_id(value: str | None) -> str:
    """The user id of an X-User-Id header: MissingUserId if absent, InvalidInput if unusable."""
    if value is None or not value.strip():
        raise MissingUserId()
    if len(value) > MAX_USER_ID or not value.isprintable():
        raise InvalidInput(f"X-User-Id must be 1..{MAX_USER_ID} printable characters")
    return value


async def user_id(
    found: CallerDep,
    x_user_id: Annotated[
        str | None,
        Header(
            alias="X-User-Id",
            description="The web inbox user making the request (optional with a user's own key)",
        ),
    ] = None,
) -> str:
    """The admin key's X-User-Id, or a user key's own user (403 `user_mismatch` if X-User-Id differs)."""
    return acting_user(found, x_user_id)


def acting_user(found: Caller, x_user_id: str | None) -> str:
    """The user a request acts for, given its caller and its X-User-Id header."""
    if found.user_id is None:
        return check_user_id(x_user_id)
    if x_user_id is not None and x_user_id != found.user_id:
        raise UserMismatch()
    return found.user_id


UserId = Annotated[str, Depends(user_id)]

MAX_IDEMPOTENCY_KEY = 128

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=MAX_IDEMPOTENCY_KEY,
        pattern=r"^[\x20-\x7e]+$",
        description=(
            f"1..{MAX_IDEMPOTENCY_KEY} printable ASCII characters, unique per send (a UUID). A key belongs to"
            " the user for 24 h and binds the session and the request: a retry with the same key, session"
            " and request returns the first send's result and sends nothing; the same key on another"
            " session or with a different request is 422 `idempotency_key_reused`, even while the first"
            " is running. Retry a 504 `send_outcome_unknown` with the same key to learn whether the"
            " message went out."
        ),
    ),
]


async def owned_session(
    res: Resources, user: UserId, session_id: Annotated[str, Path(alias="id")]
) -> AsyncIterator[str]:
    """The id of the path's session if the user owns it; 404 session_not_found for a missing or foreign one.

    Ownership is remembered (`api.owners`). A session deleted through another API process is still
    remembered here until its actor is found gone: the database then decides between 404 and 503.
    """
    if await res.owners.owner(session_id) != user:
        raise SessionNotFound()
    try:
        yield session_id
    except ActorUnreachable:
        if await res.owners.recheck(session_id) != user:
            raise SessionNotFound() from None
        raise


OwnedSession = Annotated[str, Depends(owned_session, scope="function")]
