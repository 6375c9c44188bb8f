"""Who a chat is: profile pictures, address-book names and group subjects, asked of whatsmeow on demand.

- `picture(jid, known_id)`: whatsmeow's GetProfilePictureInfo. With `ExistingID` it answers "unchanged"
  (an empty info) when the picture is the same; "no picture" and "hidden from you" are None. The URL is
  a WhatsApp CDN link that expires (its `oe=` parameter, hex seconds): the session refreshes it.
- `download(picture)`: a plain HTTPS GET (profile pictures are not end-to-end encrypted), with the media
  fetcher's rules: WhatsApp's CDN hosts only, no redirects, bounded, no URL in an error.
- `contact_name(jid)`: the name the phone's address book gives the contact (whatsmeow keeps it from
  app-state sync in its contact store), else None.
- `group_subject(jid)`: a group's subject (name).
Every Go call goes through the client's bounded `GoCalls` pool, the contact store's too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from actors.clients.neonize import media_fetch, outgoing
from actors.clients.neonize.convert import jid_str
from actors.ports import PictureInfo
from kernel.domain import ContactInfo
from kernel.errors import ClientError, ClientTimeout, MediaNotAvailable, MediaTooLarge

log = logging.getLogger(__name__)

DOWNLOAD_TIMEOUT_S = 20.0
_NO_PICTURE = ("404", "401", "no profile picture", "hidden", "not-authorized", "item-not-found")

Call = Callable[..., Awaitable[Any]]


class Profiles:
    def __init__(
        self, lib: Any, native: Any, call: Call, go: Any, label: str, media: media_fetch.MediaFetcher
    ) -> None:
        self._lib = lib
        self._media = media  # its hosts, certificate check and timeouts: pictures come from the same CDN
        self._native = native
        self._call = call
        self._label = label
        # neonize's contact store calls Go through the module's own dispatcher: route it through ours.
        native.contact._ContactStore__client = go

    async def picture(self, jid: str, known_id: str | None) -> PictureInfo | None:
        params = self._lib.proto.GetProfilePictureParams(Preview=False, ExistingID=known_id or "")
        try:
            info = await self._call(
                self._native.get_profile_picture, outgoing.jid_proto(self._lib, jid), params
            )
        except self._lib.exc.GetProfilePictureError as err:
            if any(word in str(err).lower() for word in _NO_PICTURE):
                return None
            raise ClientError(f"profile picture lookup failed: {err}") from err
        if not info.URL:
            # whatsmeow answers nothing when ExistingID is still current.
            return PictureInfo(id=known_id, url="") if known_id else None
        return PictureInfo(id=str(info.ID), url=str(info.URL))

    async def download(self, picture: PictureInfo, max_bytes: int) -> bytes:
        """The picture's bytes, fetched like media: only from WhatsApp's CDN hosts, no redirect followed,
        bounded in size and time; no error names the URL (a signed CDN link)."""
        if not self._media.allows(picture.url):
            raise MediaNotAvailable()
        try:
            async with (
                asyncio.timeout(DOWNLOAD_TIMEOUT_S),
                self._media.http_client(follow_redirects=False) as http,
                http.stream("GET", picture.url) as resp,
            ):
                if resp.status_code in (403, 404, 410):
                    raise MediaNotAvailable("WhatsApp no longer has this picture")
                if resp.status_code != 200:
                    raise ClientError(f"WhatsApp's CDN answered the picture download with {resp.status_code}")
                if int(resp.headers.get("content-length") or 0) > max_bytes:
                    raise MediaTooLarge(limit=max_bytes)
                data = bytearray()
                async for chunk in resp.aiter_bytes():
                    data += chunk
                    if len(data) > max_bytes:
                        raise MediaTooLarge(limit=max_bytes)
        except TimeoutError:
            raise ClientTimeout("the picture download took too long") from None
        except httpx.TimeoutException as err:
            raise ClientTimeout("WhatsApp's CDN stopped answering") from err
        except httpx.HTTPError as err:
            raise ClientError(f"picture download failed ({type(err).__name__})") from err
        return bytes(data)

    async def contact_name(self, jid: str) -> str | None:
        try:
            info = await self._call(self._native.contact.get_contact, outgoing.jid_proto(self._lib, jid))
        except self._lib.exc.ContactStoreError as err:
            log.info("session %s: no contact entry for %s: %s", self._label, jid, err)
            return None
        if not info.Found:
            return None
        return str(info.FullName or info.FirstName) or None

    async def contact_info(self, jid: str) -> ContactInfo:
        """whatsmeow's GetUserInfo (about text, picture id), its contact store (names) and blocklist."""
        target = outgoing.jid_proto(self._lib, jid)
        try:
            users = await self._call(self._native.get_user_info, target)
            blocklist = await self._call(self._native.get_blocklist)
        except self._lib.exc.NeonizeError as err:
            raise ClientError(f"contact lookup failed ({type(err).__name__}: {err})") from err
        try:
            entry = await self._call(self._native.contact.get_contact, target)
        except self._lib.exc.ContactStoreError:
            entry = None
        return contact_from(jid, users, entry, blocklist)

    async def set_blocked(self, jid: str, blocked: bool) -> None:
        action = self._lib.enums.BlocklistAction.BLOCK if blocked else self._lib.enums.BlocklistAction.UNBLOCK
        try:
            await self._call(self._native.update_blocklist, outgoing.jid_proto(self._lib, jid), action)
        except self._lib.exc.NeonizeError as err:
            raise ClientError(f"blocklist update failed ({type(err).__name__}: {err})") from err
        log.info("session %s: %s %s", self._label, "blocked" if blocked else "unblocked", jid)

    async def group_subject(self, jid: str) -> str | None:
        try:
            info = await self._call(self._native.get_group_info, outgoing.jid_proto(self._lib, jid))
        except self._lib.exc.GetGroupInfoError as err:
            log.info("session %s: group %s not available: %s", self._label, jid, err)
            return None
        return str(info.GroupName.Name) or None


def contact_from(jid: str, users: Any, entry: Any | None, blocklist: Any) -> ContactInfo:
    """A ContactInfo from whatsmeow's answers: `users` (GetUserInfoSingleReturnFunction list), the
    contact store's `entry` (ContactInfo, or None) and the `blocklist` (Blocklist)."""
    user = next((u.UserInfo for u in users if jid_str(u.JID) == jid), None)
    name = push = None
    if entry is not None and entry.Found:
        name = str(entry.FullName or entry.FirstName) or None
        push = str(entry.PushName) or None
    return ContactInfo(
        jid=jid,
        name=name,
        push_name=push,
        about=(str(user.Status) or None) if user is not None else None,
        blocked=any(jid_str(b) == jid for b in blocklist.JIDs),
        picture_id=(str(user.PictureID) or None) if user is not None else None,
    )
