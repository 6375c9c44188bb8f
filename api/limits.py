"""Request body size limits, enforced before and while a body is read (never after buffering it).

Uploads (`/sessions/{id}/send/media|audio`) may carry MAX_MEDIA_BYTES plus the multipart framing; every
other body is JSON and small. A declared Content-Length above the limit is refused at once, without
reading; a body streamed without one is cut off as soon as it passes the limit.
"""

from __future__ import annotations

import re

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_response

JSON_BODY_LIMIT = 1024 * 1024
# Multipart framing, part headers and the text fields on top of the file itself.
FORM_OVERHEAD = 512 * 1024

# A declared body this many times over the limit is cut off instead of being read and dropped.
CUT_OFF_FACTOR = 4

UPLOAD_PATH = re.compile(r"^/sessions/[^/]+/send/(media|audio)$")


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"The request body is larger than {limit} bytes")
        self.limit = limit


def upload_limit(max_media_bytes: int) -> int:
    return max_media_bytes + FORM_OVERHEAD


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_media_bytes: int) -> None:
        self.app = app
        self.max_media_bytes = max_media_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        upload = bool(UPLOAD_PATH.match(scope.get("path", "")))
        limit = upload_limit(self.max_media_bytes) if upload else JSON_BODY_LIMIT
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            if upload:
                message = f"The file is larger than the limit of {self.max_media_bytes} bytes"
                response = error_response(413, "media_too_large", message)
            else:
                response = error_response(
                    413, "request_too_large", f"The request body is larger than {limit} bytes"
                )
            if declared > CUT_OFF_FACTOR * limit:
                # Not worth reading to the end: hang up (a client that is still sending gets a reset).
                response.headers["Connection"] = "close"
            # Otherwise the server reads and drops the body after the answer, so the client sees the 413.
            await response(scope, receive, send)
            return
        total = 0

        async def limited_receive() -> Message:
            nonlocal total
            message = await receive()
            if message["type"] == "http.request":
                total += len(message.get("body", b""))
                if total > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, limited_receive, send)


def _content_length(scope: Scope) -> int | None:
    value = Headers(scope=scope).get("content-length")
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None
