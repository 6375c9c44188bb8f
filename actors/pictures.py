"""When a chat's picture as stored is still good, and what its cached bytes are the bytes of.

Import-light (the stdlib only): the session (`actors.session_contacts`) and the API
(`api.stored_reads`) decide the same way whether a picture needs WhatsApp or can come from the store.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

PICTURE_RECHECK = timedelta(hours=24)  # a picture may change without its link expiring
PICTURE_EXPIRY_MARGIN = timedelta(minutes=5)
OWN_UNKNOWN = ""  # our own picture as the row knows it: a link, but not WhatsApp's id of it


def cdn_expiry(url: str | None) -> datetime | None:
    """When a WhatsApp CDN link stops working: its `oe` parameter (hex Unix seconds), if it has one."""
    if not url:
        return None
    values = parse_qs(urlsplit(url).query).get("oe")
    try:
        return datetime.fromtimestamp(int(values[0], 16), UTC) if values else None
    except (ValueError, OverflowError, OSError):
        return None


@dataclass(frozen=True, slots=True)
class PictureState:
    id: str | None = None
    url: str | None = None  # the CDN link as last fetched
    checked_at: datetime | None = None

    @property
    def key(self) -> str:
        """What a cached copy of this picture is filed under: WhatsApp's id of it (ours: its link)."""
        return self.id or self.url or ""

    def link_alive(self, now: datetime) -> bool:
        expiry = cdn_expiry(self.url)
        return bool(self.url) and (expiry is None or expiry - PICTURE_EXPIRY_MARGIN > now)

    def stale(self, now: datetime) -> bool:
        if self.checked_at is None or now - self.checked_at > PICTURE_RECHECK:
            return True
        return self.id is not None and not self.link_alive(now)


def own_picture(url: str | None) -> PictureState:
    """Our own picture as the session's row knows it (`profile_pic_url`)."""
    return PictureState(OWN_UNKNOWN if url else None, url, None)


def cache_serves(state: PictureState, cached_key: str, now: datetime, *, own: bool) -> bool:
    """Whether bytes cached under `cached_key` are this picture, recent enough to serve as they are.

    Our own picture has no check time in the row: it is good while its link is.
    """
    if state.id is None or cached_key != state.key:
        return False
    return state.link_alive(now) if own else not state.stale(now)
