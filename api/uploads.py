"""Streaming multipart/form-data parsing with hard caps: the file part is refused as soon as it passes
MAX_MEDIA_BYTES, before the rest arrives; nothing is spooled to disk.

Starlette's own form parser would spool any size to a temporary file first; uploads here are bounded
in memory by what we accept. What a refused client still sends is read and dropped by the server
(uvicorn discards the unread body of an answered request), so the client gets its 413.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from api.limits import FORM_OVERHEAD, BodyTooLarge
from kernel.errors import InvalidInput, MediaTooLarge

FIELD_LIMIT = 256 * 1024  # one text field (a caption of 65,536 characters fits)
MAX_PARTS = 8


@dataclass(frozen=True, slots=True)
class UploadedFile:
    data: bytes
    file_name: str | None
    content_type: str | None


@dataclass(frozen=True, slots=True)
class Upload:
    fields: dict[str, str]
    file: UploadedFile | None

    def text(self, name: str) -> str | None:
        return self.fields.get(name)


@dataclass(slots=True)
class _Part:
    name: str = ""
    file_name: str | None = None
    content_type: str | None = None
    is_file: bool = False
    data: bytearray = field(default_factory=bytearray)


class _Collector:
    """python-multipart callbacks gathering text fields and the one file part, within the caps."""

    def __init__(self, file_field: str, max_file_bytes: int) -> None:
        self.file_field = file_field
        self.max_file_bytes = max_file_bytes
        self.fields: dict[str, str] = {}
        self.file: UploadedFile | None = None
        self.parts = 0
        self.ended = False
        self._part = _Part()
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._headers: dict[bytes, bytes] = {}

    def on_part_begin(self) -> None:
        self.parts += 1
        if self.parts > MAX_PARTS:
            raise InvalidInput(f"At most {MAX_PARTS} form fields are accepted")
        self._part = _Part()
        self._headers = {}

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]
        if len(self._header_value) > 8192:
            raise InvalidInput("A form part header is too long")

    def on_header_end(self) -> None:
        self._headers[bytes(self._header_name).lower()] = bytes(self._header_value)
        self._header_name.clear()
        self._header_value.clear()

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = options.get(b"name")
        if name is None:
            raise InvalidInput("A form part has no name")
        self._part.name = _decode(name)
        raw_file_name = options.get(b"filename")
        self._part.file_name = _decode(raw_file_name) if raw_file_name else None
        content_type = self._headers.get(b"content-type")
        self._part.content_type = _decode(content_type) if content_type else None
        self._part.is_file = self._part.name == self.file_field

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        part = self._part
        part.data += data[start:end]
        if part.is_file:
            if len(part.data) > self.max_file_bytes:
                raise MediaTooLarge(
                    f"The file is larger than the limit of {self.max_file_bytes} bytes",
                    limit=self.max_file_bytes,
                )
        elif len(part.data) > FIELD_LIMIT:
            raise InvalidInput(f"The form field {part.name!r} is too long")

    def on_part_end(self) -> None:
        part = self._part
        if part.is_file:
            if self.file is not None:
                raise InvalidInput(f"Only one {self.file_field!r} part is accepted")
            self.file = UploadedFile(bytes(part.data), part.file_name, part.content_type)
        else:
            self.fields[part.name] = _decode(bytes(part.data))
        self._part = _Part()

    def on_end(self) -> None:
        self.ended = True


def _decode(raw: bytes) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InvalidInput("Form fields must be UTF-8") from err
    if "\x00" in text:
        raise InvalidInput("Form fields must not contain NUL characters")
    return text


async def read_upload(request: Request, max_file_bytes: int, file_field: str = "file") -> Upload:
    """The form's text fields and its file, reading the body as it streams in.

    MediaTooLarge as soon as the declared length or the file passes the limit; InvalidInput for a body
    that is not well-formed multipart/form-data.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_file_bytes + FORM_OVERHEAD:
        raise MediaTooLarge(
            f"The file is larger than the limit of {max_file_bytes} bytes", limit=max_file_bytes
        )
    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise InvalidInput("Expected a multipart/form-data body")
    collector = _Collector(file_field, max_file_bytes)
    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": collector.on_part_begin,
            "on_part_data": collector.on_part_data,
            "on_part_end": collector.on_part_end,
            "on_header_field": collector.on_header_field,
            "on_header_value": collector.on_header_value,
            "on_header_end": collector.on_header_end,
            "on_headers_finished": collector.on_headers_finished,
            "on_end": collector.on_end,
        },
    )
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except BodyTooLarge as err:
        raise MediaTooLarge(f"The file is larger than the limit of {max_file_bytes} bytes") from err
    except FormParserError as err:
        raise InvalidInput("Malformed multipart/form-data body") from err
    if not collector.ended:
        raise InvalidInput("Truncated multipart/form-data body")
    return Upload(collector.fields, collector.file)
