"""The bodies of sending a location, a contact card and a poll."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field

from api.schemas.common import ApiModel, Phone, Recipient, _no_nul
from api.schemas.messages import TypingMs

MAX_POLL_OPTIONS = 12

_Line = Annotated[str, Field(min_length=1, max_length=256), AfterValidator(_no_nul)]


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


def _distinct(options: list[str]) -> list[str]:
    if len({o.strip() for o in options}) != len(options):
        raise ValueError("options must be distinct")
    return options


class SendLocationIn(ApiModel):
    to: Recipient
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    name: Annotated[_Line, AfterValidator(_not_blank)] | None = Field(None, description="The place's name")
    address: Annotated[_Line, AfterValidator(_not_blank)] | None = None
    typing_ms: TypingMs = 0


class SendContactIn(ApiModel):
    to: Recipient
    name: Annotated[_Line, AfterValidator(_not_blank)] = Field(description="The name the card shows")
    phone: Phone = Field(description="The contact's phone number; WhatsApp links the card to its account")
    typing_ms: TypingMs = 0


class SendPollIn(ApiModel):
    to: Recipient
    question: Annotated[_Line, AfterValidator(_not_blank)]
    options: Annotated[
        list[Annotated[_Line, Field(max_length=100), AfterValidator(_not_blank)]],
        Field(min_length=2, max_length=MAX_POLL_OPTIONS),
        AfterValidator(_distinct),
    ]
    multiple_answers: bool = Field(False, description="Voters may pick more than one option")
    typing_ms: TypingMs = 0


# --- contacts ----------------------------------------------------------------------------------------------

MAX_CHECKED = 50


class CheckNumbersIn(ApiModel):
    phones: list[Phone] = Field(min_length=1, max_length=MAX_CHECKED, description="Phone numbers to check")


class NumberCheckOut(ApiModel):
    phone: str = Field(description="The number in E.164")
    on_whatsapp: bool = Field(alias="onWhatsApp")
    jid: str | None = Field(description="The account's JID when the number has one")


class NumberChecksOut(ApiModel):
    items: list[NumberCheckOut]


class ContactOut(ApiModel):
    id: str = Field(description="The contact's JID")
    phone: str | None = Field(description="E.164, when the JID is a phone number's")
    name: str | None = Field(description="The name the phone's address book gives them")
    push_name: str | None = Field(description="The name they gave themself")
    about: str | None = Field(description="Their about text, when they share it")
    picture_url: str | None = Field(
        description="The bridge's route to their picture (when they have one and the inbox has their chat)"
    )
    blocked: bool
