"""A real SOCKS5 / HTTP CONNECT proxy for tests, in a thread of the test process (any process can dial it).

It speaks the protocols for real (RFC 1928 and 1929; HTTP CONNECT with `Proxy-Authorization: Basic`),
records every target it is asked for, and relays only to loopback addresses ("localhost" included):
anything else (web.whatsapp.com) is refused, so no test ever reaches the internet through it, and the
record shows the dial came here.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from urllib.parse import quote

LOOPBACK_NAMES = ("localhost",)


@dataclass
class ProxyServer:
    scheme: str  # socks5 | http
    username: str | None = None
    password: str | None = None
    port: int = 0
    targets: list[str] = field(default_factory=list)  # host:port asked for, in order
    auth_failures: int = 0
    connections: int = 0

    def url(self, *, username: str | None = None, password: str | None = None) -> str:
        """This proxy's URL with its own credentials (or the ones given)."""
        user = username if username is not None else self.username
        secret = password if password is not None else self.password
        creds = f"{quote(user, safe='')}:{quote(secret or '', safe='')}@" if user is not None else ""
        return f"{self.scheme}://{creds}127.0.0.1:{self.port}"

    def relayed(self, host_port: str) -> bool:
        return host_port in self.targets

    # ------------------------------------------------------------------ serving

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            if self.scheme == "socks5":
                await self._socks5(reader, writer)
            else:
                await self._http(reader, writer)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()

    async def _socks5(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        version, count = await reader.readexactly(2)
        methods = await reader.readexactly(count)
        if version != 5:
            return
        wanted = 0x02 if self.username is not None else 0x00
        if wanted not in methods:
            self.auth_failures += 1  # counted before the answer: the client may act on it at once
            writer.write(b"\x05\xff")
            return
        writer.write(bytes([5, wanted]))
        if wanted == 0x02:
            _ver, ulen = await reader.readexactly(2)
            user = (await reader.readexactly(ulen)).decode()
            (plen,) = await reader.readexactly(1)
            password = (await reader.readexactly(plen)).decode()
            if (user, password) != (self.username, self.password):
                self.auth_failures += 1
                writer.write(b"\x01\x01")
                return
            writer.write(b"\x01\x00")
        _ver, cmd, _rsv, atyp = await reader.readexactly(4)
        if atyp == 1:
            host = socket.inet_ntoa(await reader.readexactly(4))
        elif atyp == 3:
            (n,) = await reader.readexactly(1)
            host = (await reader.readexactly(n)).decode()
        else:
            host = socket.inet_ntop(socket.AF_INET6, await reader.readexactly(16))
        port = int.from_bytes(await reader.readexactly(2), "big")
        self.targets.append(f"{host}:{port}")
        upstream = await self._open(host, port) if cmd == 1 else None
        if upstream is None:
            writer.write(b"\x05\x02\x00\x01" + bytes(6))  # not allowed by ruleset
            return
        writer.write(b"\x05\x00\x00\x01" + bytes(6))
        await _relay(reader, writer, *upstream)

    async def _http(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        method, target, _version = head[0].split(" ", 2)
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:] if line)
        }
        if self.username is not None:
            expected = base64.b64encode(f"{self.username}:{self.password or ''}".encode()).decode()
            if headers.get("proxy-authorization") != f"Basic {expected}":
                self.auth_failures += 1
                writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
                return
        if method != "CONNECT":
            writer.write(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            return
        self.targets.append(target)
        host, _, port = target.rpartition(":")
        upstream = await self._open(host.strip("[]"), int(port))
        if upstream is None:
            writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            return
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await _relay(reader, writer, *upstream)

    async def _open(self, host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        if host not in LOOPBACK_NAMES:
            try:
                if not ipaddress.ip_address(host).is_loopback:
                    return None
            except ValueError:
                return None
        try:
            return await asyncio.open_connection(host, port)
        except OSError:
            return None


async def _relay(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    up_reader: asyncio.StreamReader,
    up_writer: asyncio.StreamWriter,
) -> None:
    async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with suppress(OSError):
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        with suppress(OSError):
            dst.close()

    await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


@contextmanager
def running_proxy(
    scheme: str, username: str | None = None, password: str | None = None
) -> Iterator[ProxyServer]:
    """A proxy serving on 127.0.0.1 from its own thread and loop until the block ends."""
    proxy = ProxyServer(scheme, username, password)
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    server: list[asyncio.Server] = []

    async def start() -> None:
        srv = await asyncio.start_server(proxy._serve, "127.0.0.1", 0)
        proxy.port = srv.sockets[0].getsockname()[1]
        server.append(srv)
        ready.set()

    def run() -> None:
        loop.run_until_complete(start())
        loop.run_forever()
        for task in asyncio.all_tasks(loop):
            task.cancel()
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()

    thread = threading.Thread(target=run, name=f"{scheme}-proxy", daemon=True)
    thread.start()
    assert ready.wait(10), "the test proxy did not start"
    try:
        yield proxy
    finally:
        loop.call_soon_threadsafe(server[0].close)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
