"""Sending text, files and voice notes through a session."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from api.deps import IdempotencyKey, OwnedSession, Resources
from api.errors import error_responses
from api.schemas import MAX_ID, RECIPIENT_PATTERN, SendResultOut, SendTextIn
from api.uploads import Upload, read_upload
from kernel.domain import SendResult
from kernel.errors import InvalidInput
from kernel.ids import to_jid
from kernel.text_rules import MAX_TEXT, MAX_TYPING_MS
from kernel.wire import JSON, iso

router = APIRouter(tags=["send"])


def _result(sent: SendResult) -> JSON:
    return {"id": sent.id, "timestamp": iso(sent.timestamp)}


def _multipart(*, voice: bool) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "to": {
            "type": "string",
            "description": "A phone number (+15551234567) or a JID",
            "maxLength": MAX_ID,
            "pattern": RECIPIENT_PATTERN,
        },
        "file": {"type": "string", "format": "binary"},
    }
    if not voice:
        properties["caption"] = {"type": "string", "maxLength": MAX_TEXT}
    shown = "recording audio…" if voice else "typing…"
    properties["typingMs"] = {
        "type": "integer",
        "minimum": 0,
        "maximum": MAX_TYPING_MS,
        "description": f'Show "{shown}" in the chat for this many milliseconds first, as a person would',
    }
    schema = {"type": "object", "properties": properties, "required": ["to", "file"]}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}


def _recipient(upload: Upload) -> str:
    to = upload.text("to")
    if to is None:
        raise InvalidInput("to is required")
    return to_jid(to)


def _typing_ms(upload: Upload) -> int:
    """The form's `typingMs`: what the JSON bodies take (an integer 0..MAX_TYPING_MS), 0 when absent."""
    value = (upload.text("typingMs") or "").strip()
    if not value:
        return 0
    # The length first: int() refuses (ValueError) a string of thousands of digits.
    if not (value.isascii() and value.isdigit() and len(value) <= 6) or int(value) > MAX_TYPING_MS:
        raise InvalidInput(f"typingMs must be an integer from 0 to {MAX_TYPING_MS}")
    return int(value)


def _file(upload: Upload) -> tuple[bytes, str | None, str | None]:
    if upload.file is None:
        raise InvalidInput("file is required")
    return upload.file.data, upload.file.file_name, upload.file.content_type


@router.post(
    "/sessions/{id}/send/text",
    response_model=SendResultOut,
    responses=error_responses(400, 403, 404, 409, 429, 502, 504),
)
async def send_text(
    body: SendTextIn, session_id: OwnedSession, res: Resources, key: IdempotencyKey = None
) -> JSON:
    """Send a text message (optionally quoting a message of that chat)."""
    jid = to_jid(body.to)
    sent = await res.actors.send_text(
        session_id, jid, body.text, body.quoted_id, idempotency_key=key, typing_ms=body.typing_ms
    )
    return _result(sent)


@router.post(
    "/sessions/{id}/send/media",
    response_model=SendResultOut,
    responses=error_responses(400, 403, 404, 409, 413, 415, 429, 502, 504),
    openapi_extra=_multipart(voice=False),
)
async def send_media(
    request: Request, session_id: OwnedSession, res: Resources, key: IdempotencyKey = None
) -> JSON:
    """Send a file: images and videos WhatsApp shows inline go as such, anything else as a document."""
    upload = await read_upload(request, res.settings.max_media_bytes)
    jid = _recipient(upload)
    caption = upload.text("caption") or None
    if caption is not None and len(caption) > MAX_TEXT:
        raise InvalidInput(f"caption must be at most {MAX_TEXT} characters")
    typing_ms = _typing_ms(upload)
    data, file_name, mimetype = _file(upload)
    sent = await res.actors.send_media(
        session_id, jid, data, file_name, mimetype, caption, idempotency_key=key, typing_ms=typing_ms
    )
    return _result(sent)


@router.post(
    "/sessions/{id}/send/audio",
    response_model=SendResultOut,
    responses=error_responses(400, 403, 404, 409, 413, 415, 429, 502, 504),
    openapi_extra=_multipart(voice=True),
)
async def send_audio(
    request: Request, session_id: OwnedSession, res: Resources, key: IdempotencyKey = None
) -> JSON:
    """Send a voice note: any common audio file (WAV, WebM, MP3, M4A...) is converted to OGG/Opus."""
    upload = await read_upload(request, res.settings.max_media_bytes)
    jid = _recipient(upload)
    typing_ms = _typing_ms(upload)
    data, _, _ = _file(upload)
    sent = await res.actors.send_voice_note(session_id, jid, data, idempotency_key=key, typing_ms=typing_ms)
    return _result(sent)
