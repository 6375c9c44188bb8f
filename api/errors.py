"""Every error leaves the API as `{"error": {"code", "message"}}`: domain errors, bad input, HTTP errors,
and whatever else went wrong (never a bare 500 page). Also the error responses each route documents.
"""

from __future__ import annotations

import logging
import traceback
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException

from api.schemas import ErrorOut
from api.unavailable import as_wa_error, describe
from kernel.errors import RateLimited, SessionUnavailable, WaError

log = logging.getLogger(__name__)

# Seconds a client should wait before retrying a 503 that carries no better estimate.
DEFAULT_RETRY_AFTER = 2

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "request_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
}

_DESCRIPTIONS = {
    400: (
        "Bad request (`missing_user_id`, `max_sessions_reached`, `invalid_slot`;"
        " `bad_request`: a body that cannot be decoded)"
    ),
    401: "Missing or wrong X-API-Key, or a revoked user key (`unauthorized`)",
    403: (
        "A user key on another user's X-User-Id (`user_mismatch`) or on an admin route (`admin_only`);"
        " WhatsApp restricts this number, e.g. its reach-out time lock (`whatsapp_restricted`);"
        " only a group's admins may do that (`not_group_admin`)"
    ),
    404: (
        "No such session for this user, or no such message (`session_not_found`, `message_not_found`);"
        " groups: `groups_disabled` (INBOX_CHATS=direct), `group_not_found`, `participant_not_found`"
    ),
    409: "Conflict with the session's state (`slot_taken`, `phone_already_paired`, `session_not_connected`)",
    413: "Upload larger than MAX_MEDIA_BYTES (`media_too_large`)",
    415: "File that cannot be sent (`unsupported_audio`, `unsupported_media`)",
    422: (
        "Invalid input (`invalid_request`, `invalid_recipient`, `invalid_phone`, `not_on_whatsapp`,"
        " `idempotency_key_reused`)"
    ),
    429: (
        "Too fast (`send_rate_limited`: the number's own pace; `whatsapp_rate_limited`: WhatsApp's;"
        " `rate_limited`); see Retry-After. Nothing was sent or queued"
    ),
    502: "WhatsApp refused or failed the operation (`send_failed`, `client_error`)",
    503: "The session's actor is (re)starting or a backing service is down; see Retry-After",
    504: "A send's outcome is unknown (`send_outcome_unknown`): retry with the same Idempotency-Key",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error statuses (400, 401, 422 and 503 are always possible: a body
    that cannot be decoded is 400 on any route that takes one)."""
    wanted = sorted({400, 401, 422, 503, *statuses})
    return {
        status: {"model": ErrorOut, "description": _DESCRIPTIONS.get(status, "Error")} for status in wanted
    }


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(error_body(code, message), status_code=status, headers=headers)


def _retry_after(err: WaError) -> dict[str, str] | None:
    if isinstance(err, SessionUnavailable | RateLimited):
        return {"Retry-After": str(err.retry_after)}
    if err.http_status == 503:
        return {"Retry-After": str(DEFAULT_RETRY_AFTER)}
    return None


async def wa_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, WaError)
    if exc.http_status >= 500:
        log.warning("%s %s: %s (%s)", request.method, request.url.path, exc.code, exc.message)
    return error_response(exc.http_status, exc.code, exc.message, _retry_after(exc))


async def invalid_request(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(422, "invalid_request", describe_validation(exc.errors()))


def describe_validation(errors: Any) -> str:
    """What was wrong, by location; never the input itself (it could be large, or a secret)."""
    parts = []
    for error in list(errors)[:3]:
        loc = [str(p) for p in error.get("loc", ()) if p not in ("body", "query", "path", "header")]
        where = ".".join(loc) or "request"
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "The request is not valid"


async def http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    return error_response(exc.status_code, code, message, dict(exc.headers) if exc.headers else None)


async def unexpected(request: Request, exc: Exception) -> JSONResponse:
    """A dependency that is not there is a 503 wherever it surfaced; anything else is a logged 500.

    Logs name the exception's class and SQLSTATE, never its text: SQLAlchemy's holds the SQL parameters.
    """
    method = request.scope.get("method", "WEBSOCKET")  # a WebSocket's scope has no method
    mapped = as_wa_error(exc)
    if mapped is not None:
        log.warning("%s %s: %s (%s)", method, request.url.path, mapped.code, describe(exc))
        return error_response(mapped.http_status, mapped.code, mapped.message, _retry_after(mapped))
    log.error(
        "%s %s failed: %s\n%s",
        method,
        request.url.path,
        describe(exc),
        "".join(traceback.format_tb(exc.__traceback__)),
    )
    return error_response(500, "internal_error", "Internal error")


# What a dependency raises, answered where routes' errors are (Starlette's handler for `Exception` answers
# too, but then re-raises for the server to log, text and all).
_DEPENDENCY_ERRORS: tuple[type[Exception], ...] = (
    DBAPIError,
    PoolTimeout,
    asyncpg.PostgresError,
    RedisError,
    OSError,
    TimeoutError,
    ExceptionGroup,
)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(WaError, wa_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(HTTPException, http_error)
    for kind in _DEPENDENCY_ERRORS:
        app.add_exception_handler(kind, unexpected)
    app.add_exception_handler(Exception, unexpected)
