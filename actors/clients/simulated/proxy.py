"""The simulated network's proxy rule: a session with a proxy really dials it, and its answer decides.

The simulated WhatsApp is not behind the proxy (it lives in PostgreSQL), so the dial checks what the
proxy itself decides, over a real TCP connection, and then hangs up:
- no connection (refused, unknown host, nothing within `DIAL_S`) → `proxy_unreachable`;
- socks5: the greeting (RFC 1928) and, with credentials, the user/password sub-negotiation (RFC 1929);
  a proxy that wants credentials we lack or refuses ours → `proxy_auth_failed`;
- http: `CONNECT web.whatsapp.com:443` with `Proxy-Authorization: Basic`; 407 → `proxy_auth_failed`, any
  other HTTP answer → works (the proxy took the credentials; where it would connect us is its business);
- anything that is not the proxy's protocol → `proxy_refused`.
A proxy that passes is used: the session pairs and connects as without one. Media are not modelled.
"""

from __future__ import annotations

import asyncio
import base64
import logging

from kernel.domain import Reason
from kernel.proxy import ProxySettings

Reader = asyncio.StreamReader
Writer = asyncio.StreamWriter

log = logging.getLogger(__name__)

DIAL_S = 5.0
WHATSAPP = "web.whatsapp.com:443"


async def check_proxy(proxy: ProxySettings) -> Reason | None:
    """Why the simulated network cannot be reached through `proxy`, or None when it can."""
    try:
        async with asyncio.timeout(DIAL_S):
            reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
    except (OSError, TimeoutError):
        return Reason.PROXY_UNREACHABLE
    try:
        async with asyncio.timeout(DIAL_S):
            if proxy.scheme == "socks5":
                return await _socks5(proxy, reader, writer)
            return await _http(proxy, reader, writer)
    except (OSError, TimeoutError, asyncio.IncompleteReadError):
        return Reason.PROXY_REFUSED
    finally:
        writer.close()


async def _socks5(proxy: ProxySettings, reader: Reader, writer: Writer) -> Reason | None:
    methods = b"\x00\x02" if proxy.username is not None else b"\x00"
    writer.write(b"\x05" + bytes([len(methods)]) + methods)
    await writer.drain()
    version, method = await reader.readexactly(2)
    if version != 5:
        return Reason.PROXY_REFUSED
    if method == 0x00:
        return None
    if method != 0x02 or proxy.username is None:
        return Reason.PROXY_AUTH_FAILED  # 0xFF: none of our methods, i.e. it wants credentials we lack
    user, password = proxy.username.encode(), (proxy.password or "").encode()
    writer.write(b"\x01" + bytes([len(user)]) + user + bytes([len(password)]) + password)
    await writer.drain()
    _version, status = await reader.readexactly(2)
    return None if status == 0 else Reason.PROXY_AUTH_FAILED


async def _http(proxy: ProxySettings, reader: Reader, writer: Writer) -> Reason | None:
    head = f"CONNECT {WHATSAPP} HTTP/1.1\r\nHost: {WHATSAPP}\r\n"
    if proxy.username is not None:
        token = base64.b64encode(f"{proxy.username}:{proxy.password or ''}".encode()).decode()
        head += f"Proxy-Authorization: Basic {token}\r\n"
    writer.write((head + "\r\n").encode())
    await writer.drain()
    status = (await reader.readline()).split()
    if len(status) < 2 or not status[0].startswith(b"HTTP/") or not status[1].isdigit():
        return Reason.PROXY_REFUSED
    return Reason.PROXY_AUTH_FAILED if status[1] == b"407" else None
