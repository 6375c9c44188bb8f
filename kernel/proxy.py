"""A number's proxy: the URL a client gives, checked, and the two ways it is shown.

`socks5://user:pass@host:port` or `http://user:pass@host:port` (credentials optional). whatsmeow takes
exactly these two schemes (`Client.SetProxyAddress`: `socks5` through golang.org/x/net/proxy, `http`
through `http.ProxyURL`); the media client (httpx) takes the same URL. `public` is what a client sees
(never the password); `url` carries the password and only reaches the session's WhatsApp client.
Import-light: stdlib only.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from dataclasses import dataclass, field
from urllib.parse import quote, unquote, urlsplit

from kernel.errors import InvalidProxy

log = logging.getLogger(__name__)

SCHEMES = ("socks5", "http")
MAX_URL = 512
MAX_CREDENTIAL = 255  # SOCKS5's username/password sub-negotiation (RFC 1929) carries one byte of length
_HOSTNAME = re.compile(r"^(?=.{1,253}$)(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*\.?$", re.I)


@dataclass(frozen=True, slots=True)
class ProxySettings:
    """A checked proxy. Its repr never shows the password (it may reach a log through an object)."""

    scheme: str
    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def public(self) -> str:
        """The URL without the password (`socks5://user@host:port`): what `Session.proxy` shows."""
        user = f"{quote(self.username, safe='')}@" if self.username else ""
        return f"{self.scheme}://{user}{self._netloc_host}:{self.port}"

    @property
    def url(self) -> str:
        """The full URL with the credentials, for the client that dials through it."""
        if self.username is None:
            return self.public
        secret = f":{quote(self.password, safe='')}" if self.password else ""
        return f"{self.scheme}://{quote(self.username, safe='')}{secret}@{self._netloc_host}:{self.port}"

    @property
    def _netloc_host(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host


def parse_proxy(text: str) -> ProxySettings:
    """The proxy `text` names; InvalidProxy (422 `invalid_proxy`) for anything else. The error never
    repeats the URL: it may hold a password."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidProxy("proxy must be a URL such as socks5://user:pass@host:port")
    text = text.strip()
    if len(text) > MAX_URL or any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in text):
        raise InvalidProxy("proxy is not a valid URL")
    try:
        parts = urlsplit(text)
        port = parts.port
        host = parts.hostname
    except ValueError as err:  # a port that is not a number or out of range, a bad IPv6 literal
        raise InvalidProxy("proxy has an invalid host or port") from err
    if parts.scheme.lower() not in SCHEMES:
        raise InvalidProxy("proxy scheme must be socks5 or http")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise InvalidProxy("proxy must be scheme://[user:pass@]host:port with nothing after the port")
    if not host or not _valid_host(host):
        raise InvalidProxy("proxy has no valid host")
    if port is None or not 1 <= port <= 65535:
        raise InvalidProxy("proxy needs a port between 1 and 65535")
    username = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    if username == "":
        username = None
    if password is not None and username is None:
        raise InvalidProxy("proxy has a password but no user name")
    for value in (username, password):
        if value is not None and (len(value.encode()) > MAX_CREDENTIAL or "\x00" in value):
            raise InvalidProxy("proxy user name and password are at most 255 bytes each")
    return ProxySettings(parts.scheme.lower(), host.lower(), port, username, password or None)


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return bool(_HOSTNAME.match(host))


def stored_proxy(public_url: str | None, password: str | None) -> ProxySettings | None:
    """The proxy as stored: its public URL and its password apart (None: none, or a stored URL this
    version no longer accepts, which is logged and dialled without)."""
    if not public_url:
        return None
    try:
        proxy = parse_proxy(public_url)
    except InvalidProxy:
        log.error("a stored proxy URL is not valid any more; dialling without it")
        return None
    return ProxySettings(proxy.scheme, proxy.host, proxy.port, proxy.username, password or None)
