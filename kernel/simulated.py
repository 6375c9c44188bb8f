"""The simulated network's records: what it received from a session, and the devices it knows.

Stored by `persistence.sim_network`, read by the simulated client (actors/clients/simulated) and the
`/simulator` routes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from kernel.domain import MessageType


class SentAction(StrEnum):
    """What the network received that is not a message: `message_id` is the message it is about (a new
    id for presence), `text` the emoji, the new text or the typing state."""

    REACTION = "reaction"
    EDIT = "edit"
    REVOKE = "revoke"
    PRESENCE = "presence"
    BLOCK = "block"
    UNBLOCK = "unblock"
    REJECT_CALL = "reject_call"


def sent_type(value: str) -> MessageType | SentAction:
    return SentAction(value) if value in SentAction.__members__.values() else MessageType(value)


@dataclass(frozen=True, slots=True)
class SentMessage:
    """One message (or `SentAction`) the network received from a session (a row of `wa_sim.sent`)."""

    message_id: str
    to: str
    type: MessageType | SentAction
    mimetype: str | None = None
    ptt: bool = False
    size: int | None = None
    seconds: int | None = None
    file_name: str | None = None
    text: str | None = None  # the text, or the caption of media
    quoted_id: str | None = None
    data: bytes | None = field(default=None, repr=False)
    # A location, contact card or poll as `kernel.message_kinds.content_json` stores it.
    content: dict[str, Any] | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Device:
    jid: str
    phone: str
    push_name: str | None
