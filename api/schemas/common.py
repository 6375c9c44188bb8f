"""What every body shares: field types and limits, the camelCase base model, the error body."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from kernel.text_rules import MAX_TEXT

MAX_ID = 128  # ids and JIDs: the database columns' width
MAX_PHONE = 32
# Documented, not enforced by the schema: a recipient that does not parse is 422 `invalid_recipient`
# (kernel.ids.to_jid decides), a phone that is no number 422 `invalid_phone`.
RECIPIENT_PATTERN = (
    r"^(\+?[0-9][0-9 ()\-.]{5,24}|[0-9]{5,20}(-[0-9]{5,20})?(:[0-9]{1,3})?@(s\.whatsapp\.net|g\.us|lid))$"
)
PHONE_PATTERN = r"^\+?[0-9][0-9 ()\-.]{5,30}$"


def _no_nul(value: str) -> str:
    # PostgreSQL text cannot hold NUL: refuse it here rather than fail deep in a store.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


Id = Annotated[str, Field(min_length=1, max_length=MAX_ID), AfterValidator(_no_nul)]
Phone = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_PHONE,
        examples=["+14155552671"],
        json_schema_extra={"pattern": PHONE_PATTERN},
    ),
]
Recipient = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_ID,
        description="A phone number (+15551234567, digits) or a JID (…@s.whatsapp.net, …@g.us, …@lid)",
        examples=["+15551234567"],
        json_schema_extra={"pattern": RECIPIENT_PATTERN},
    ),
    AfterValidator(_no_nul),
]
Timestamp = Annotated[
    str, Field(json_schema_extra={"format": "date-time"}, examples=["2026-01-31T12:00:00.000Z"])
]
MessageText = Annotated[
    str, Field(min_length=1, max_length=MAX_TEXT), AfterValidator(_no_nul), AfterValidator(_not_blank)
]


class ApiModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        frozen=True,
    )


# --- errors ------------------------------------------------------------------------------------------------


class ErrorDetail(ApiModel):
    code: str = Field(examples=["session_not_found"], description="Stable machine-readable code")
    message: str = Field(description="Human-readable explanation")


class ErrorOut(ApiModel):
    """Every error response: `{"error": {"code", "message"}}`."""

    error: ErrorDetail
