"""Chats and messages: the inbox's bodies, acting on messages, WebSocket frames, sending text."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from api.schemas.common import ApiModel, Id, MessageText, Recipient, Timestamp
from api.schemas.groups import GroupChangeOut
from kernel.domain import MessageStatus, MessageType
from kernel.text_rules import MAX_TYPING_MS

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


class PollTallyOut(ApiModel):
    option: str
    votes: int


class PollVoteOut(ApiModel):
    voter: str = Field(description="Who voted (a JID)")
    options: list[str] = Field(description="What they picked (none: they took their vote back)")
    timestamp: Timestamp


class PollOut(ApiModel):
    question: str
    options: list[str]
    selectable: int = Field(description="How many options a voter may pick (0: any number)")
    tally: list[PollTallyOut] = Field(default_factory=list, description="Votes per option, in order")
    votes: list[PollVoteOut] = Field(default_factory=list, description="Each voter's latest choice")


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


class FoundMessageOut(ApiModel):
    session_id: str
    chat_name: str | None = Field(description="The chat's name; null when it has none (its number then)")
    message: MessageOut


class InboxSearchOut(ApiModel):
    chats: list[InboxChatOut] = Field(description="Chats whose name or number holds `q`, most recent first")
    messages: list[FoundMessageOut] = Field(description="Messages holding the words of `q`, newest first")


# --- acting on chats and messages -------------------------------------------------------------------------


def _emoji(value: str) -> str:
    from kernel.errors import InvalidInput
    from kernel.text_rules import check_emoji

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
    """`chat` frame (`wa:chat:{id}`): a chat's unread count changed (read here, on the phone, ...), or a
    group's own event happened (`group` says what: subject, description, who joined or left...)."""

    chat_id: str
    unread_count: int
    name: str | None
    group: GroupChangeOut | None = None


class MessageUpdateFrame(ApiModel):
    """`message_update` frame (`wa:message_update:{id}`): a stored message changed; `message` is all of it
    as it is now (a revoked one has `type: revoked` and no content)."""

    chat_id: str
    message_id: str
    change: Literal["reaction", "edit", "revoke", "receipt", "vote"]
    message: MessageOut


class CallFrame(ApiModel):
    """`call` frame (`wa:call:{id}`): someone called this number; `rejected` when the bridge declined
    it (REJECT_CALLS)."""

    chat_id: str = Field(description="The caller's chat")
    call_id: str
    timestamp: Timestamp
    rejected: bool


class PresenceFrame(ApiModel):
    """`presence` frame (`wa:presence:{id}`): the contact of `chatId` is composing, recording, paused
    (stopped typing), available (online) or unavailable (offline). At most one per chat every 0.5 s, the
    same state repeated only after 10 s; the latest state always arrives."""

    chat_id: str
    state: Literal["composing", "recording", "paused", "available", "unavailable"]
    last_seen: Timestamp | None = Field(description="When the contact was last online, when they share it")


# --- sending -----------------------------------------------------------------------------------------------


TypingMs = Annotated[
    int,
    Field(
        ge=0,
        le=MAX_TYPING_MS,
        description='Show "typing…" in the chat for this many milliseconds first, as a person would',
    ),
]


class SendTextIn(ApiModel):
    to: Recipient
    text: MessageText
    quoted_id: Id | None = None
    typing_ms: TypingMs = 0


class SendResultOut(ApiModel):
    id: str
    timestamp: Timestamp
