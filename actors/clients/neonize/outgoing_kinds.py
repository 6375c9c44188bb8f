"""Locations, contact cards and polls we send, as the waE2E messages whatsmeow would send.

Built here, not through neonize: `send_contact` formats the number with `phonenumbers` and labels it
"Ponsel", and `build_poll_vote_creation` is an FFI call (whatsmeow's `BuildPollCreation`). The poll is
the same message that builds: `pollCreationMessage` with the options and `selectableOptionsCount`, and a
random 32-byte `messageContextInfo.messageSecret`, the key voters encrypt their votes with. Our own copy
keeps the message (its `media_ref`) so that the votes can be read against it.
"""

from __future__ import annotations

import base64
import secrets
from typing import Any

from actors.clients.neonize.runtime import Lib
from kernel.domain import ContactCard, Location, Poll
from kernel.message_kinds import OutgoingContent

SECRET_BYTES = 32


def location_message(lib: Lib, location: Location) -> Any:
    fields: dict[str, Any] = {
        "degreesLatitude": location.latitude,
        "degreesLongitude": location.longitude,
    }
    if location.name:
        fields["name"] = location.name
    if location.address:
        fields["address"] = location.address
    return lib.e2e.Message(locationMessage=lib.e2e.LocationMessage(**fields))


def contact_message(lib: Lib, card: ContactCard) -> Any:
    return lib.e2e.Message(
        contactMessage=lib.e2e.ContactMessage(displayName=card.display_name, vcard=card.vcard)
    )


def poll_message(lib: Lib, poll: Poll) -> Any:
    e2e = lib.e2e
    options = [e2e.PollCreationMessage.Option(optionName=o) for o in poll.options]
    creation = e2e.PollCreationMessage(
        name=poll.question, options=options, selectableOptionsCount=poll.selectable
    )
    context = e2e.MessageContextInfo(messageSecret=secrets.token_bytes(SECRET_BYTES))
    return e2e.Message(pollCreationMessage=creation, messageContextInfo=context)


def content_message(lib: Lib, content: OutgoingContent) -> Any:
    if isinstance(content, Location):
        return location_message(lib, content)
    if isinstance(content, ContactCard):
        return contact_message(lib, content)
    return poll_message(lib, content)


def own_ref(message: Any) -> dict[str, Any]:
    """What our copy keeps of the message we sent (what a reply quotes; a poll's secret for its votes)."""
    kind = next(name for name in _FIELDS if message.HasField(name))
    return {"kind": kind, "message": base64.b64encode(message.SerializeToString()).decode()}


_FIELDS = ("locationMessage", "contactMessage", "pollCreationMessage")
