"""The session processes' Redis publisher against a real server: delivery, AUTH, outages, a hung server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from actors.publisher import LoggedEvent, Publisher, PublishError
from api.localstack import EmbeddedValkey, free_port
from kernel.event_index import INDEXED_SINCE
from kernel.redis_url import Endpoint


@pytest.fixture(scope="module")
def valkey(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedValkey]:
    with EmbeddedValkey(tmp_path_factory.mktemp("valkey")) as server:
        yield server


@pytest.fixture
async def subscriber(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def next_message(pubsub: object, timeout: float = 5.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)  # type: ignore[attr-defined]
        if got is not None:
            return dict(got)
    raise AssertionError("no message")


async def test_published_messages_reach_a_subscriber_intact(redis_url: str, subscriber: Redis) -> None:
    pubsub = subscriber.pubsub()
    await pubsub.subscribe("wa:msg:test-publisher")
    publisher = Publisher(redis_url)
    try:
        assert await publisher.publish("wa:msg:nobody-listens", "x") == 0
        bodies = ['{"text":"olá 👋"}', "x" * 200_000, ""]
        for body in bodies:
            assert await publisher.publish("wa:msg:test-publisher", body) == 1
        for body in bodies:
            got = await next_message(pubsub)
            assert got["channel"] == b"wa:msg:test-publisher" and got["data"] == body.encode()
        await publisher.ping()
    finally:
        await publisher.aclose()
        await pubsub.aclose()


async def test_credentials_in_the_url_are_used_and_a_wrong_password_is_refused(
    valkey: EmbeddedValkey,
) -> None:
    admin = Redis.from_url(valkey.url)
    await admin.execute_command("ACL", "SETUSER", "bridge", "on", ">s3cret pass", "+@all", "&*")
    await admin.config_set("requirepass", "top-secret")
    base = f"127.0.0.1:{valkey.port}"
    try:
        for url in (
            f"redis://:top-secret@{base}/0",
            f"redis://{base}/0?password=top-secret",
            f"redis://bridge:s3cret%20pass@{base}/3",
        ):
            publisher = Publisher(url)
            assert await publisher.publish("wa:status:x", "{}") == 0, url
            await publisher.aclose()
        for url in (f"redis://:wrong@{base}/0", f"redis://{base}/0"):
            with pytest.raises(PublishError) as refused:
                await Publisher(url).publish("wa:status:x", "{}")
            assert "wrong" not in str(refused.value) and "top-secret" not in str(refused.value)
    finally:
        await admin.execute_command("AUTH", "top-secret")
        await admin.config_set("requirepass", "")
        await admin.execute_command("ACL", "DELUSER", "bridge")
        await admin.aclose()


async def test_an_outage_fails_fast_and_the_next_publish_reconnects(valkey: EmbeddedValkey) -> None:
    publisher = Publisher(valkey.url, timeout_s=0.5)
    try:
        assert await publisher.publish("wa:status:x", "before") == 0
        valkey.stop()
        started = time.monotonic()
        with pytest.raises(PublishError):
            await publisher.publish("wa:status:x", "during")
        # Bounded by its own timeout, not the OS's: generous, since load only adds to it.
        assert time.monotonic() - started < 0.5 + 5.0
        valkey.start()
        assert await publisher.publish("wa:status:x", "after") == 0
    finally:
        valkey.start()
        await publisher.aclose()


async def test_a_connection_the_server_closed_while_idle_is_replaced_and_nothing_is_lost(
    valkey: EmbeddedValkey,
) -> None:
    admin, listener = Redis.from_url(valkey.url), Redis.from_url(valkey.url)
    pubsub = listener.pubsub()  # Redis never times out a subscriber
    await pubsub.subscribe("wa:msg:idle")
    publisher = Publisher(valkey.url)
    try:
        assert await publisher.publish("wa:msg:idle", "first") == 1
        await admin.config_set("timeout", "1")  # the server drops clients idle for a second
        await asyncio.sleep(2.5)
        assert await publisher.publish("wa:msg:idle", "after idle") == 1
        await admin.aclose()  # it was idle too
        admin = Redis.from_url(valkey.url)
        await admin.config_set("timeout", "0")
        for client in await admin.client_list():
            if client.get("cmd") == "publish":  # the publisher's connection, killed under it
                await admin.client_kill_filter(_id=client["id"])
        assert await publisher.publish("wa:msg:idle", "after kill") == 1
        got = [(await next_message(pubsub))["data"] for _ in range(3)]
        assert got == [b"first", b"after idle", b"after kill"]
    finally:
        await admin.aclose()
        async with Redis.from_url(valkey.url) as fresh:  # `admin` may have been dropped while idle
            await fresh.config_set("timeout", "0")
        await publisher.aclose()
        await pubsub.aclose()
        await listener.aclose()


async def test_a_server_that_never_answers_times_out_and_its_late_reply_is_never_read(
    redis_url: str,
) -> None:
    """A reply that arrives after the timeout must not be taken for the next command's."""
    connections: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        await reader.read(100)
        await asyncio.sleep(0.3)
        writer.write(b"+PONG\r\n")  # late, and the wrong reply for a PUBLISH anyway

    port = free_port()
    server = await asyncio.start_server(silent, "127.0.0.1", port)
    publisher = Publisher(f"redis://127.0.0.1:{port}", timeout_s=0.2)
    try:
        started = time.monotonic()
        with pytest.raises(PublishError):
            await publisher.publish("wa:msg:x", "1")
        # Bounded by its 0.2 s timeout (a silent server would otherwise hold it forever).
        assert time.monotonic() - started < 0.2 + 5.0
        await asyncio.sleep(0.3)
        with pytest.raises(PublishError):
            await publisher.publish("wa:msg:x", "2")
        assert len(connections) == 2, "each failed command leaves its connection behind"
    finally:
        await publisher.aclose()
        server.close()
        for writer in connections:
            writer.close()


def test_urls(tmp_path: Path) -> None:
    plain = Endpoint.from_url("redis://cache.internal")
    assert (plain.host, plain.port, plain.password, plain.tls) == ("cache.internal", 6379, None, None)
    tls = Endpoint.from_url("rediss://u:p%40ss@cache:6380/2?ssl_cert_reqs=none")
    assert (tls.host, tls.port, tls.username, tls.password) == ("cache", 6380, "u", "p@ss")
    assert tls.tls is not None and not tls.tls.check_hostname
    assert Endpoint.from_url("rediss://cache").tls.check_hostname  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="ssl_ca_certs"):
        Endpoint.from_url(f"rediss://cache?ssl_ca_certs={tmp_path}/missing.pem")
    sock = Endpoint.from_url(f"unix://{tmp_path}/redis.sock?db=4")
    assert (sock.path, sock.host, sock.db) == (f"{tmp_path}/redis.sock", None, 4)
    assert (plain.db, tls.db) == (0, 2)
    for bad, why in (("http://cache", "scheme"), ("unix://", "socket path"), ("redis://h/x", "number")):
        with pytest.raises(ValueError, match=why):
            Endpoint.from_url(bad)


async def test_logged_events_are_added_to_the_stream_and_published_in_one_write(
    valkey: EmbeddedValkey,
) -> None:
    """Logged, indexed and PUBLISHed, pipelined, in order, in the URL's database, the stream capped near
    `maxlen` and its index to the stream's oldest entry."""
    listener = Redis.from_url(valkey.url)
    pubsub = listener.pubsub()
    await pubsub.subscribe("wa:msg:logged")
    db3 = f"redis://127.0.0.1:{valkey.port}/3"
    reader = Redis.from_url(db3)
    await reader.delete("test:log", "test:index", "test:other-index", INDEXED_SINCE)
    publisher = Publisher(db3)
    try:
        events = [
            LoggedEvent(
                "wa:msg:logged", f"m{n}", ["n", str(n)], "test:index" if n % 3 else "test:other-index"
            )
            for n in range(300)
        ]
        ids = await publisher.publish_logged("test:log", 100, events)
        assert len(ids) == 300 and len(set(ids)) == 300
        entries = await reader.xrange("test:log")
        assert 100 <= len(entries) < 300  # trimmed to about 100 (whole nodes at a time)
        assert [e[0].decode() for e in entries] == ids[-len(entries) :]
        assert [e[1][b"n"] for e in entries] == [str(n).encode() for n in range(300 - len(entries), 300)]
        # Each index holds its own events, under the same ids, back to (about) the stream's oldest.
        index = [(i.decode(), f[b"n"]) for i, f in await reader.xrange("test:index")]
        mine = [(ids[n], str(n).encode()) for n in range(300) if n % 3]
        assert index == mine[-len(index) :] and len(index) >= len(
            [n for n in range(300 - len(entries), 300) if n % 3]
        )
        assert (await reader.get(INDEXED_SINCE)).decode() == ids[0]
        got = [(await next_message(pubsub))["data"] for _ in range(300)]
        assert got == [f"m{n}".encode() for n in range(300)]
        assert await listener.exists("test:log") == 0  # database 0 untouched
        await reader.set("test:not-a-stream", "x")
        with pytest.raises(PublishError):  # a reply that is an error, after reading all replies
            await publisher.publish_logged("test:not-a-stream", 10, events[:1])
        assert await publisher.publish("wa:msg:logged", "still in step") == 1
    finally:
        await reader.delete("test:log", "test:index", "test:other-index", INDEXED_SINCE, "test:not-a-stream")
        await reader.aclose()
        await publisher.aclose()
        await pubsub.aclose()
        await listener.aclose()
