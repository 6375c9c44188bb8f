"""A Redis connection that only PUBLISHes, logs events and PINGs (RESP2), for the session processes.

A session never subscribes or reads keys, and redis-py costs each session process 7.4 MiB of private
memory (124 modules, the OpenTelemetry SDK among them) and a third of a send's publishing time
(tests/benchmarks/README.md). This speaks the commands a session needs over one asyncio stream:
`AUTH` when the URL carries credentials, `PUBLISH`, the events' replayable log (`kernel.event_index`'s
script, loaded once per connection, then one `EVALSHA` per event that adds it to the shared log and its
session's index and PUBLISHes it; a batch of events is one write), `PING`. The API keeps redis-py.

URLs: as `kernel.redis_url` parses them. The database number matters for the stream only (pub/sub
channels are server-wide).

One command (or pipelined batch) at a time; a failure or a timeout closes the connection (a reply may
still be in flight), and the next command connects anew. A kept connection the server has closed
meanwhile (an idle `timeout`, a proxy, a restart) is replaced before use, or, if that shows only as the
command is sent, the command is sent once more on a fresh connection. Every failure is a `PublishError`,
an `OSError`.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from kernel.event_index import APPEND, INDEXED_SINCE
from kernel.redis_url import Endpoint

# `EVALSHA` names the script by its SHA1; every new connection loads it (`SCRIPT LOAD`) first.
_APPEND_SHA = hashlib.sha1(APPEND.encode()).hexdigest()

# What a lost, slow or confused connection raises (ValueError: an unparsable reply).
_FAILURES = (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError)


class PublishError(ConnectionError):
    """Redis could not be reached, refused us, or answered out of protocol."""


@dataclass(frozen=True, slots=True)
class LoggedEvent:
    """One event for `publish_logged`: its pub/sub channel and message, its stream entry's fields, and
    the index stream it is also added to (`kernel.event_index`)."""

    channel: str
    message: str
    fields: Sequence[str]
    index: str


def _describe(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}".rstrip(": ")


def _command(*args: str | bytes) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode() if isinstance(arg, str) else arg
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class Publisher:
    def __init__(self, url: str, *, timeout_s: float = 0.5) -> None:
        self._endpoint = Endpoint.from_url(url)
        self._timeout_s = timeout_s
        self._lock = asyncio.Lock()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def publish(self, channel: str, message: str) -> int:
        """PUBLISH; the number of subscribers that got it."""
        (reply,) = await self._call(_command("PUBLISH", channel, message), 1)
        if not reply.startswith(b":"):
            raise PublishError(f"unexpected reply to PUBLISH: {reply[:40]!r}")
        return int(reply[1:])

    async def publish_logged(self, stream: str, maxlen: int, events: Sequence[LoggedEvent]) -> list[str]:
        """Per event, add it to `stream` (trimmed to about `maxlen`) and its index, then PUBLISH it, all
        in one write (`kernel.event_index.APPEND`).

        The entry ids, in order. On a failure some of the events may have been applied.
        """
        if not events:
            return []
        trim = str(maxlen)
        commands = b"".join(
            _command(
                "EVALSHA",
                _APPEND_SHA,
                "3",
                stream,
                e.index,
                INDEXED_SINCE,
                trim,
                e.channel,
                e.message,
                *e.fields,
            )
            for e in events
        )
        replies = await self._call(commands, len(events))
        if any(not r.startswith(b"$") for r in replies):
            raise PublishError(f"unexpected reply to EVALSHA: {replies[:1]!r}")
        return [r[1:].decode() for r in replies]

    async def ping(self) -> None:
        (reply,) = await self._call(_command("PING"), 1)
        if reply != b"+PONG":
            raise PublishError(f"unexpected reply to PING: {reply[:40]!r}")

    async def aclose(self) -> None:
        async with self._lock:
            self._drop()

    async def _call(self, command: bytes, replies: int) -> list[bytes]:
        async with self._lock:
            if self._reader is not None and self._reader.at_eof():
                self._drop()  # the server closed it while idle (its `timeout`, a proxy, a restart)
            for attempt in (1, 2):
                reused = self._writer is not None
                try:
                    async with asyncio.timeout(self._timeout_s):
                        if not reused:
                            await self._connect()
                        return await self._roundtrip(command, replies)
                except PublishError:  # Redis answered with an error
                    self._drop()
                    raise
                except (asyncio.IncompleteReadError, ConnectionError) as err:
                    self._drop()
                    if reused and attempt == 1:
                        # A kept connection found closed as we used it: once more on a fresh one.
                        continue
                    raise PublishError(_describe(err)) from err
                except _FAILURES as err:
                    self._drop()
                    raise PublishError(_describe(err)) from err
                except asyncio.CancelledError:
                    self._drop()  # a reply may be in flight: the stream is out of step
                    raise
            raise AssertionError("unreachable")

    async def _roundtrip(self, command: bytes, replies: int) -> list[bytes]:
        """Write, then read `replies` replies (all of them, so that the stream stays in step)."""
        assert self._reader is not None and self._writer is not None
        self._writer.write(command)
        await self._writer.drain()
        got = [await self._reply() for _ in range(replies)]
        for reply in got:
            if reply.startswith(b"-"):
                raise PublishError(reply[1:].decode(errors="replace"))
        return got

    async def _reply(self) -> bytes:
        """One simple reply line (`+`, `-`, `:`), or a bulk string as `$` + its content."""
        assert self._reader is not None
        line = (await self._reader.readuntil(b"\r\n"))[:-2]
        if line.startswith(b"$"):
            size = int(line[1:])
            return b"$" + ((await self._reader.readexactly(size + 2))[:-2] if size >= 0 else b"")
        return line

    async def _connect(self) -> None:
        ep = self._endpoint
        if ep.path is not None:
            self._reader, self._writer = await asyncio.open_unix_connection(ep.path)
        else:
            self._reader, self._writer = await asyncio.open_connection(ep.host, ep.port, ssl=ep.tls)
        if ep.password is not None:
            credentials = (ep.username, ep.password) if ep.username else (ep.password,)
            if await self._roundtrip(_command("AUTH", *credentials), 1) != [b"+OK"]:
                raise PublishError("AUTH was not accepted")
        if ep.db:
            await self._roundtrip(_command("SELECT", str(ep.db)), 1)
        # Loaded on each connection: a server restarted (or flushed of scripts) since has forgotten it.
        if await self._roundtrip(_command("SCRIPT", "LOAD", APPEND), 1) != [b"$" + _APPEND_SHA.encode()]:
            raise PublishError("SCRIPT LOAD did not answer the script's SHA1")

    def _drop(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
