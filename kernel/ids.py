"""Identifiers: session ids, actor names, and WhatsApp JIDs parsed from what users type."""

from __future__ import annotations

import re
import uuid
from typing import NewType

from kernel.errors import InvalidRecipient

SessionId = NewType("SessionId", str)
UserId = NewType("UserId", str)
Jid = NewType("Jid", str)

USER_SERVER = "s.whatsapp.net"
GROUP_SERVER = "g.us"
LID_SERVER = "lid"
_SERVERS = {USER_SERVER, GROUP_SERVER, LID_SERVER, "broadcast", "newsletter"}

_PHONE = re.compile(r"^\+?[0-9][0-9 ()\-.]{5,24}$")
_JID = re.compile(r"^(?P<user>[0-9]{5,20}(?:-[0-9]{5,20})?)(?::(?P<device>[0-9]{1,3}))?@(?P<server>[a-z.]+)$")


def new_session_id() -> SessionId:
    return SessionId(str(uuid.uuid4()))


def parse_session_id(value: str) -> SessionId:
    """A canonical session id, or ValueError for anything that is not a UUID."""
    return SessionId(str(uuid.UUID(value)))


def actor_name(session_id: str) -> str:
    return f"session-{session_id}"


def session_id_of_actor(name: str) -> SessionId | None:
    if not name.startswith("session-"):
        return None
    try:
        return parse_session_id(name.removeprefix("session-"))
    except ValueError:
        return None


def phone_digits(value: str) -> str:
    """The digits of a phone number typed with or without `+`, spaces, dashes or brackets."""
    if not _PHONE.match(value.strip()):
        raise InvalidRecipient(f"{value!r} is not a phone number")
    digits = re.sub(r"[^0-9]", "", value)
    if not 7 <= len(digits) <= 15:
        raise InvalidRecipient(f"{value!r} is not a phone number")
    return digits


def to_jid(value: str) -> Jid:
    """A chat JID from a phone number (`+15551234567`, digits) or a JID; InvalidRecipient otherwise."""
    value = value.strip()
    if "@" in value:
        match = _JID.match(value)
        if not match or match["server"] not in _SERVERS:
            raise InvalidRecipient(f"{value!r} is not a WhatsApp JID")
        if match["server"] == GROUP_SERVER or match["device"] is None:
            return Jid(value)
        # A device JID (user:device@server) addresses the account, not one device.
        return Jid(f"{match['user']}@{match['server']}")
    return Jid(f"{phone_digits(value)}@{USER_SERVER}")


def jid_user(jid: str) -> str:
    """The user part of a JID without its device (`15551234567:7@s.whatsapp.net` → `15551234567`)."""
    return jid.partition("@")[0].partition(":")[0]


def phone_of_jid(jid: str) -> str | None:
    """E.164 phone of a user JID, or None for groups and `@lid` ids."""
    if not jid.endswith("@" + USER_SERVER):
        return None
    return "+" + jid_user(jid)


def is_group(jid: str) -> bool:
    return jid.endswith("@" + GROUP_SERVER)
