"""The simulated network's message kinds, contacts and pictures: what `/simulator` controls produce,
shaped as the neonize adapter converts the same WhatsApp traffic.

- `typed_content(...)`: a location, contact cards, a poll, a video note, a view-once media (marked, no
  caption, no download), each with its `summary` (`kernel.message_kinds`).
- `Contacts`: per contact an address-book name, a push name, a picture (a small generated PNG behind a
  CDN-like URL that carries an `oe=` expiry, as WhatsApp's do) and a LID. A contact with a LID is
  addressed by it, as WhatsApp does after its LID migration: its messages arrive from the LID (with the
  phone alternative only once revealed) and its receipts name the LID chat.
- `chat_of(value)`: the chat a control names; besides phones and JIDs it accepts the addresses the inbox
  never opens (`status@broadcast`, `…@broadcast`, `…@newsletter`, `…@bot`, `0@s.whatsapp.net`), so a test
  can send what WhatsApp sends.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from actors.clients.simulated.content import png
from actors.ports import PictureInfo
from kernel.domain import ContactCard, Location, Media, MessageType, Poll
from kernel.errors import InvalidInput, InvalidRecipient, MediaNotAvailable, MediaTooLarge
from kernel.ids import LID_SERVER, USER_SERVER, jid_user, to_jid
from kernel.message_kinds import summary_for

PICTURE_TTL_S = 6 * 3600  # how long a picture URL stays valid (WhatsApp's are days; the test scales it)
_SPECIAL = re.compile(r"^[0-9a-z]{1,32}@(broadcast|newsletter|bot|s\.whatsapp\.net)$")
_PICTURE_URL = re.compile(r"^https://pps\.whatsapp\.net/sim/(?P<id>[0-9a-f]{16})\.png\?oe=(?P<oe>[0-9A-F]+)$")


def chat_of(value: str) -> str:
    """The chat JID a control names (phones, JIDs, and the addresses the inbox drops)."""
    try:
        return str(to_jid(value))
    except InvalidRecipient:
        if _SPECIAL.match(value.strip()):
            return value.strip()
        raise


def typed_content(
    *,
    text: str | None,
    location: Mapping[str, Any] | None = None,
    contacts: list[Mapping[str, Any]] | None = None,
    poll: Mapping[str, Any] | None = None,
    view_once: bool = False,
    media: tuple[MessageType, Media, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """`Message` keyword arguments for one incoming message of the given kind."""
    if location is not None:
        loc = Location(
            latitude=float(location["latitude"]),
            longitude=float(location["longitude"]),
            name=location.get("name"),
            address=location.get("address"),
            url=location.get("url"),
            live=bool(location.get("live", False)),
        )
        summary = summary_for(MessageType.LOCATION, location=loc)
        return {"type": MessageType.LOCATION, "text": text, "location": loc, "summary": summary}
    if contacts:
        cards = tuple(_card(c) for c in contacts)
        summary = summary_for(MessageType.CONTACT, contacts=cards)
        return {"type": MessageType.CONTACT, "text": None, "contacts": cards, "summary": summary}
    if poll is not None:
        options = tuple(str(o) for o in poll.get("options") or ())
        if not poll.get("question") or len(options) < 2:
            raise InvalidInput("a poll needs a question and at least two options")
        p = Poll(str(poll["question"]), options, int(poll.get("selectable", 1)))
        return {
            "type": MessageType.POLL,
            "text": None,
            "poll": p,
            "summary": summary_for(MessageType.POLL, poll=p),
        }
    if media is not None:
        kind, info, ref = media
        summary = summary_for(kind, media=info, view_once=view_once)
        if view_once:
            return {"type": kind, "text": None, "media": info, "view_once": True, "summary": summary}
        return {"type": kind, "text": text, "media": info, "media_ref": ref, "summary": summary}
    if view_once:
        raise InvalidInput("view once needs media")
    return {"type": MessageType.TEXT, "text": text}


def _card(spec: Mapping[str, Any]) -> ContactCard:
    name = str(spec.get("displayName") or spec.get("display_name") or "")
    if not name:
        raise InvalidInput("a contact card needs a displayName")
    phone = str(spec.get("phone") or "")
    vcard = spec.get("vcard") or (
        f"BEGIN:VCARD\nVERSION:3.0\nFN:{name}\nTEL;type=CELL;waid={phone.lstrip('+')}:{phone}\nEND:VCARD"
    )
    return ContactCard(name, str(vcard))


DEFAULT_ABOUT = "Hey there! I am using WhatsApp."


def not_on_whatsapp(jid: str) -> bool:
    """The network's one rule for unknown numbers: a phone whose digits end in `0000` has no account."""
    return jid.endswith("@" + USER_SERVER) and jid_user(jid).endswith("0000")


@dataclass(slots=True)
class Contact:
    name: str | None = None  # the address book's
    push_name: str | None = None
    picture: bytes | None = None
    picture_id: str | None = None
    lid: str | None = None
    lid_revealed: bool = False
    about: str | None = DEFAULT_ABOUT
    blocked: bool = False


class Contacts:
    """What the simulated network knows about the people a session talks to (in memory, per process)."""

    def __init__(self) -> None:
        self._by_jid: dict[str, Contact] = {}
        self.picture_ttl_s: float = PICTURE_TTL_S

    def get(self, jid: str) -> Contact:
        return self._by_jid.setdefault(jid, Contact())

    def by_lid(self, lid: str) -> str | None:
        return next((jid for jid, c in self._by_jid.items() if c.lid == lid), None)

    def set_picture(self, jid: str, seed: str) -> None:
        contact = self.get(jid)
        contact.picture = png(seed)
        contact.picture_id = hashlib.sha256(contact.picture).hexdigest()[:16]

    def set_lid(self, jid: str, lid: str) -> None:
        if not lid.endswith("@" + LID_SERVER):
            raise InvalidInput(f"{lid!r} is not a LID (…@lid)")
        self.get(jid).lid = lid

    def picture(self, jid: str, known_id: str | None) -> PictureInfo | None:
        contact = self._by_jid.get(jid)
        if contact is None or contact.picture_id is None:
            return None
        if known_id == contact.picture_id:
            return PictureInfo(id=known_id, url="")  # unchanged, as whatsmeow answers
        expiry = int(time.time() + self.picture_ttl_s)
        url = f"https://pps.whatsapp.net/sim/{contact.picture_id}.png?oe={expiry:X}"
        return PictureInfo(id=contact.picture_id, url=url, mimetype="image/png")

    def download(self, picture: PictureInfo, max_bytes: int) -> bytes:
        match = _PICTURE_URL.match(picture.url)
        if match is None or int(match["oe"], 16) < time.time():
            raise MediaNotAvailable("the picture link expired")  # what the CDN answers (403)
        data = next((c.picture for c in self._by_jid.values() if c.picture_id == match["id"]), None)
        if data is None:
            raise MediaNotAvailable()
        if len(data) > max_bytes:
            raise MediaTooLarge(limit=max_bytes)
        return data
