"""The simulated network's /simulator control bodies."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from api.schemas.common import ApiModel, Id, Phone, Recipient, _no_nul
from api.schemas.messages import ContactCardOut, LocationOut, PollOut
from kernel.domain import MessageType
from kernel.text_rules import MAX_TEXT

# --- the simulated network ---------------------------------------------------------------------------------


class ScanIn(ApiModel):
    phone: Phone
    display_name: Annotated[str, Field(max_length=256), AfterValidator(_no_nul)] | None = None


class ScanOut(ApiModel):
    device_jid: str


class IncomingMediaIn(ApiModel):
    type: Literal["image", "video", "audio", "document", "sticker", "other"] = "document"
    mimetype: Annotated[str, Field(max_length=128), AfterValidator(_no_nul)] | None = None
    file_name: Annotated[str, Field(max_length=256), AfterValidator(_no_nul)] | None = None
    size: int | None = Field(None, ge=1, le=16 * 1024 * 1024)
    video_note: bool = Field(False, description="A round video message (with type video)")


SimText = Annotated[str, Field(max_length=1024), AfterValidator(_no_nul)]


class LocationIn(ApiModel):
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    name: SimText | None = None
    address: SimText | None = None
    url: SimText | None = None
    live: bool = False


class ContactCardIn(ApiModel):
    display_name: SimText = Field(min_length=1)
    phone: Phone | None = None
    vcard: Annotated[str, Field(max_length=8192), AfterValidator(_no_nul)] | None = None


class PollIn(ApiModel):
    question: SimText = Field(min_length=1)
    options: list[SimText] = Field(min_length=2, max_length=12)
    selectable: int = Field(1, ge=0, le=12)


class IncomingIn(ApiModel):
    from_: Recipient = Field(
        alias="from",
        description="A phone, a user or group JID, or an address the inbox never opens (status@broadcast,"
        " <digits>@broadcast, <digits>@newsletter, <digits>@bot, 0@s.whatsapp.net)",
    )
    text: Annotated[str, Field(max_length=MAX_TEXT), AfterValidator(_no_nul)] | None = None
    push_name: Annotated[str, Field(max_length=256), AfterValidator(_no_nul)] | None = None
    media: IncomingMediaIn | None = None
    location: LocationIn | None = None
    contacts: list[ContactCardIn] | None = Field(None, min_length=1, max_length=20)
    poll: PollIn | None = None
    view_once: bool = Field(False, description="The media is sent as view once")
    quoted_id: Id | None = Field(None, description="The message this one replies to")
    sender: Recipient | None = Field(
        None, description="Who sent it: a group member, or the sender of a broadcast-list message"
    )
    subject: SimText | None = Field(None, description="The group's subject (with a group `from`)")


class ContactIn(ApiModel):
    jid: Recipient | Literal["me"] = Field(description="The contact (a phone or JID), or `me` (our own)")
    name: SimText | None = Field(None, description="The name the phone's address book gives the contact")
    push_name: SimText | None = Field(None, description="The name the contact gave themself")
    picture: bool | None = Field(None, description="true: a new picture; false: none; omitted: unchanged")
    lid: Recipient | None = Field(
        None, description="The contact's LID (…@lid): from now on WhatsApp addresses them by it"
    )
    reveal_lid: bool = Field(True, description="Whether WhatsApp also tells the LID's phone number now")
    picture_ttl_s: float | None = Field(
        None, gt=0, le=30 * 86400, description="How long picture links handed out from now on stay valid"
    )


class HistoryIn(ApiModel):
    chats: int = Field(ge=1, le=100)
    messages_per_chat: int = Field(ge=1, le=500)


class HistoryOut(ApiModel):
    chats: int
    messages: int


class SentOut(ApiModel):
    """One message (or reaction, edit, revoke, typing state) the simulated network received."""

    action: Literal[
        "message", "reaction", "edit", "revoke", "presence", "block", "unblock", "reject_call"
    ] = Field(
        "message",
        description="What it was; for reaction, edit and revoke `id` is the message it is about",
    )
    id: str
    to: str
    type: MessageType | None = Field(description="The message's type (an edit's is text; null for others)")
    mimetype: str | None
    ptt: bool
    size: int | None
    seconds: int | None
    file_name: str | None
    text: str | None
    caption: str | None
    quoted_id: str | None
    emoji: str | None = Field(None, description='A reaction\'s emoji ("" removed it)')
    state: str | None = Field(None, description="A typing state: composing, recording or paused")
    location: LocationOut | None = Field(None, description="A location's content (type location)")
    contacts: list[ContactCardOut] | None = Field(None, description="A contact card (type contact)")
    poll: PollOut | None = Field(None, description="A poll's question and options (type poll)")
