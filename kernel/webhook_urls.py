"""Which webhook URLs and addresses the bridge may call (server-side request forgery is the risk).

A receiver must be `https` and every address its name resolves to must be a public one: loopback,
private, link-local (cloud metadata at 169.254.169.254 is one), carrier-grade NAT, multicast, reserved
and unspecified addresses are refused, in IPv4 and IPv6 (IPv4-mapped ones by their IPv4 address).
`WEBHOOK_ALLOW_PRIVATE_URLS=true` lifts both rules (`http` and any address), for receivers inside the
deployment and for tests.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_URL = 2048
RESOLVE_TIMEOUT_S = 5.0
# Public by Python's `is_global` and yet not to be called: metadata endpoints of cloud providers.
_METADATA = frozenset({ipaddress.ip_address("fd00:ec2::254"), ipaddress.ip_address("100.100.100.200")})

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class UrlNotAllowed(ValueError):
    """The URL, or an address it resolves to, is not one the bridge calls."""


@dataclass(frozen=True, slots=True)
class Target:
    """Where a URL points: scheme, host name (for the `Host` header and TLS), port, path with query."""

    scheme: str
    host: str
    port: int
    path: str


def parse(url: str, *, allow_private: bool) -> Target:
    """The URL's parts, or UrlNotAllowed (not http(s), not https unless private URLs are allowed, or
    credentials in it)."""
    if len(url) > MAX_URL or not url.isprintable() or " " in url:
        raise UrlNotAllowed("the URL is too long or has spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as err:
        raise UrlNotAllowed("the URL cannot be parsed") from err
    schemes = ("https", "http") if allow_private else ("https",)
    if parts.scheme not in schemes:
        raise UrlNotAllowed("the URL must be https")
    if not parts.hostname:
        raise UrlNotAllowed("the URL has no host")
    if parts.username or parts.password:
        raise UrlNotAllowed("the URL must not carry credentials")
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    default = 443 if parts.scheme == "https" else 80
    return Target(parts.scheme, parts.hostname, port or default, path)


def address_allowed(address: IPAddress, *, allow_private: bool) -> bool:
    if allow_private:
        return True
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast and address not in _METADATA


async def resolve(host: str, port: int, *, allow_private: bool) -> IPAddress:
    """The one address to connect to: every address `host` resolves to must be allowed (a name that
    also points inside is refused as a whole), and the first is used, so the connection is pinned to
    an address that was checked (no second lookup an attacker's DNS could answer differently)."""
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        found = [literal]
    else:
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), RESOLVE_TIMEOUT_S
            )
        except (OSError, TimeoutError, ValueError) as err:  # ValueError: UnicodeError of a bad IDNA name
            raise OSError(f"cannot resolve the host ({type(err).__name__})") from err
        found = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
    if not found:
        raise OSError("the host resolves to no address")
    if not all(address_allowed(a, allow_private=allow_private) for a in found):
        raise UrlNotAllowed("the URL resolves to a loopback, private, link-local or reserved address")
    return found[0]


async def check(url: str, *, allow_private: bool) -> Target:
    """The URL's target if it may be called now (parsed, resolved, every address allowed)."""
    target = parse(url, allow_private=allow_private)
    try:
        await resolve(target.host, target.port, allow_private=allow_private)
    except OSError as err:
        raise UrlNotAllowed("the URL's host does not resolve") from err
    return target
