"""A TCP proxy for fault injection: put it in front of PostgreSQL or Redis, then cut or stall the link.

It runs its own event loop in a daemon thread, so sync and async tests drive it alike:

    with FaultProxy("127.0.0.1", 5432) as proxy:
        url = proxy.url_for(database_url)   # the same URL, through the proxy
        proxy.cut()      # existing connections closed, new ones refused (ECONNREFUSED)
        proxy.stall()    # existing connections stop moving bytes, new ones are accepted and never served
        proxy.restore()  # back to a plain relay on the same port
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

Mode = Literal["open", "cut", "stall"]
_CHUNK = 65_536


class FaultProxy:
    def __init__(self, upstream_host: str, upstream_port: int, *, listen_port: int = 0) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = listen_port or _free_port()
        self.mode: Mode = "open"
        self.accepted = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-proxy", daemon=True)
        self._server: asyncio.Server | None = None
        self._links: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter | None]] = set()
        self._stalled: list[asyncio.StreamWriter] = []
        self._flowing = asyncio.Event()  # set while the mode is not "stall"
        self._flowing.set()

    # ------------------------------------------------------------------ control (any thread)

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        self._call(self._listen())
        return self

    def __exit__(self, *exc: object) -> None:
        self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def url_for(self, url: str) -> str:
        """`url` with its host and port replaced by the proxy's."""
        parts = urlsplit(url)
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@127.0.0.1:{self.port}" if userinfo else f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    def cut(self) -> None:
        """Close every open connection and refuse new ones until `restore`."""
        self._call(self._set("cut"))

    def stall(self) -> None:
        """Stop relaying: open connections hang, new ones are accepted and never answered."""
        self._call(self._set("stall"))

    def restore(self) -> None:
        self._call(self._set("open"))

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    # ------------------------------------------------------------------ the proxy (its own loop)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, reuse_address=True)

    async def _shutdown(self) -> None:
        await self._close_listener()
        self._drop_all()
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    async def _close_listener(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None

    def _drop_all(self) -> None:
        for client, upstream in list(self._links):
            for writer in (client, upstream):
                if writer is not None:
                    writer.transport.abort()
        self._links.clear()
        for writer in self._stalled:
            writer.transport.abort()
        self._stalled.clear()

    async def _set(self, mode: Mode) -> None:
        previous, self.mode = self.mode, mode
        if mode == "stall":
            self._flowing.clear()
        else:
            self._flowing.set()
        if mode == "cut":
            await self._close_listener()
            self._drop_all()
        elif mode == "open":
            for writer in self._stalled:
                writer.transport.abort()
            self._stalled.clear()
            if previous == "stall":
                self._drop_all()  # a stalled link has lost bytes' timing; its peers see a reset
            if self._server is None:
                await self._listen()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self.mode != "open":
            self._stalled.append(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.transport.abort()
            return
        link = (writer, up_writer)
        self._links.add(link)
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        except asyncio.CancelledError:
            pass  # shutting down: ending normally keeps asyncio's stream callback from logging it
        finally:
            self._links.discard(link)
            writer.transport.abort()
            up_writer.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while True:
                data = await reader.read(_CHUNK)
                if not data:
                    break
                await self._flowing.wait()
                if self.mode == "cut":
                    break
                writer.write(data)
                await writer.drain()
        writer.transport.abort()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
