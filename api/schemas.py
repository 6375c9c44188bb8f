"""The HTTP contract's request and response bodies (camelCase on the wire, DESIGN.md).

Responses are rendered by `actors.wire` (the one definition of the JSON shapes, shared with Redis) and
validated against these models, which also document them in the OpenAPI schema.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from actors.domain import MessageStatus, MessageType, Reason, SessionStatus
from actors.session import MAX_TEXT

MAX_ID = 128  # ids and JIDs: the database columns' width
MAX_PHONE = 32
# Documented, not enforced by the schema: a recipient that does not parse is 422 `invalid_recipient`
# (actors.ids.to_jid decides), a phone that is no number 422 `invalid_phone`.
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


# --- sessions ----------------------------------------------------------------------------------------------


class SessionOut(ApiModel):
    """A WhatsApp number of the user (the contract's `Session`)."""

    id: str
    slot: int
    status: SessionStatus
    reason: Reason | None = Field(
        description="Why the number is not connected. `phone_in_use`: the phone just scanned is linked to"
        " another number of this bridge; shown until the next pairing round starts"
    )
    phone: str | None
    display_name: str | None
    profile_pic_url: str | None = Field(
        description="The bridge's URL of this number's own picture (the chat picture route with our own"
        " number), never WhatsApp's expiring link"
    )
    last_seen: Timestamp | None
    qr: str | None = Field(
        description="The QR payload to show while `status` is qr_ready (status route only)"
    )
    pairing_code: str | None = Field(description="The 8-character code to type on the phone, once issued")


class CreateSessionIn(ApiModel):
    slot: int | None = Field(None, description="1..MAX_SESSIONS_PER_USER; the lowest free slot when omitted")
    pairing_phone: Phone | None = Field(
        None, description="Pair by phone-number code instead of QR: the code appears as `pairingCode`"
    )


class PairingCodeIn(ApiModel):
    phone: Phone


class PairingCodeOut(ApiModel):
    code: str = Field(examples=["ABCD-EFGH"])


class ReconnectOut(ApiModel):
    status: Literal["connecting"]


# --- chats and messages ------------------------------------------------------------------------------------


class MediaOut(ApiModel):
    mimetype: str
    file_name: str | None
    size: int | None
    seconds: int | None
    ptt: bool
    video_note: bool = Field(False, description="A round video message (type video)")


class LocationOut(ApiModel):
    latitude: float
    longitude: float
    name: str | None = Field(None, description="The place's name, when the sender picked a place")
    address: str | None = None
    url: str | None = None
    live: bool = Field(False, description="A live location (its first position)")


class ContactCardOut(ApiModel):
    display_name: str
    vcard: str = Field(description="The contact card as vCard text")


class PollOut(ApiModel):
    question: str
    options: list[str]
    selectable: int = Field(description="How many options a voter may pick (0: any number)")


class ReactionOut(ApiModel):
    sender: str = Field(description="Who reacted (a JID; ours when we reacted)")
    emoji: str
    timestamp: Timestamp


class MessageOut(ApiModel):
    id: str
    chat_id: str
    sender: str
    sender_name: str | None
    from_me: bool
    timestamp: Timestamp
    type: MessageType
    text: str | None
    media: MediaOut | None
    quoted_id: str | None
    status: MessageStatus
    summary: str | None = Field(None, description="A short text any UI can show for this message")
    edited_at: Timestamp | None = Field(None, description="When the author last edited the text")
    reactions: list[ReactionOut] = Field(
        default_factory=list, description="One per person who reacted (their latest reaction)"
    )
    location: LocationOut | None = Field(None, description="For type location")
    contacts: list[ContactCardOut] | None = Field(None, description="For type contact: one or more cards")
    poll: PollOut | None = Field(None, description="For type poll")
    view_once: bool = Field(
        False, description="Sent as view once: shown as such, its content (caption, media) is not kept"
    )


class ChatOut(ApiModel):
    id: str
    name: str | None
    is_group: bool
    unread_count: int
    timestamp: Timestamp | None
    last_message: MessageOut | None
    picture_url: str | None = Field(
        None,
        description="The bridge's URL of the chat's picture (GET it with the usual headers), never"
        " WhatsApp's expiring link; null when the chat has none or it was not fetched yet",
        examples=["/sessions/5f0c…/chats/15551234567@s.whatsapp.net/picture"],
    )


class ChatPage(ApiModel):
    items: list[ChatOut]
    next_cursor: str | None


class MessagePage(ApiModel):
    items: list[MessageOut]
    next_cursor: str | None


class InboxChatOut(ChatOut):
    session_id: str


class InboxOut(ApiModel):
    items: list[InboxChatOut]


# --- acting on chats and messages -------------------------------------------------------------------------


def _emoji(value: str) -> str:
    from actors.errors import InvalidInput
    from actors.session_inbox import check_emoji

    try:
        return check_emoji(value)
    except InvalidInput as err:
        raise ValueError(err.message) from err


class ReactionIn(ApiModel):
    emoji: Annotated[str, Field(max_length=64, examples=["👍"]), AfterValidator(_emoji)] = Field(
        description='One emoji; "" removes your reaction'
    )


class EditIn(ApiModel):
    text: MessageText


class TypingIn(ApiModel):
    state: Literal["composing", "recording", "paused"] = Field(
        description="composing (typing), recording (a voice note), paused (stopped)"
    )


class ChatReadOut(ApiModel):
    chat_id: str
    unread_count: int = Field(description="0: the chat is read")
    read_receipts: int = Field(description="Unread incoming messages WhatsApp got read receipts for")


# WebSocket frame bodies (`{type, sessionId, cursor}` plus these), also the bodies on the Redis channels.


class ChatFrame(ApiModel):
    """`chat` frame (`wa:chat:{id}`): a chat's unread count changed (read here, on the phone, ...)."""

    chat_id: str
    unread_count: int
    name: str | None


class MessageUpdateFrame(ApiModel):
    """`message_update` frame (`wa:message_update:{id}`): a stored message changed; `message` is all of it
    as it is now (a revoked one has `type: revoked` and no content)."""

    chat_id: str
    message_id: str
    change: Literal["reaction", "edit", "revoke", "receipt"]
    message: MessageOut


class PresenceFrame(ApiModel):
    """`presence` frame (`wa:presence:{id}`): the contact of `chatId` is composing, recording, paused
    (stopped typing), available (online) or unavailable (offline). At most one per chat every 0.5 s, the
    same state repeated only after 10 s; the latest state always arrives."""

    chat_id: str
    state: Literal["composing", "recording", "paused", "available", "unavailable"]
    last_seen: Timestamp | None = Field(description="When the contact was last online, when they share it")


# --- sending -----------------------------------------------------------------------------------------------


class SendTextIn(ApiModel):
    to: Recipient
    text: MessageText
    quoted_id: Id | None = None


class SendResultOut(ApiModel):
    id: str
    timestamp: Timestamp


# --- users -------------------------------------------------------------------------------------------------


class UserOut(ApiModel):
    id: str
    whatsapp_phone: str | None


class PhoneIn(ApiModel):
    phone: Phone


class PhoneOut(ApiModel):
    phone: str = Field(examples=["+14155552671"])


class WsTokenOut(ApiModel):
    token: str
    expires_at: Timestamp


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

    action: Literal["message", "reaction", "edit", "revoke", "presence"] = Field(
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
