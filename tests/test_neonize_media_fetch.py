"""Neonize media downloads, streamed: real neonize message protobufs through the adapter's own code path
(`NeonizeClient.download_media`), fetched from a local HTTPS server that serves files encrypted here the
way WhatsApp encrypts media (HKDF, AES-256-CBC, a 10-byte HMAC), with a certificate made here. No Go call,
no internet.

The encryption (`tests.whatsapp_media`) is written independently of `media_fetch` (its own HKDF, padding
and the key table below, from whatsmeow's `download.go`): a wrong key table or framing fails these tests.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import os
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit
from uuid import uuid4

import pytest

from actors.clients.neonize import NeonizeClient
from actors.clients.neonize.media_fetch import MediaFetcher
from actors.downloads import MediaHead, stream_media
from actors.ports import ClientOptions, MediaBody
from kernel.domain import Message
from kernel.errors import (
    ClientError,
    ClientTimeout,
    MediaNotAvailable,
    MediaTooLarge,
    ServiceUnavailable,
    SessionNotConnected,
)
from kernel.events import Connected, MessageReceived
from kernel.settings import asyncpg_dsn
from persistence.session_store import SessionStore
from tests import neonize_events as nev
from tests.raykit import insert_session
from tests.whatsapp_media import MediaServer, Sealed, seal, self_signed, serving

MiB = 1024 * 1024
LIMIT = 100 * MiB
ALICE = "15551230001"
UNUSED_DSN = "postgresql://nobody@127.0.0.1:1/never?sslmode=disable"  # these clients never connect
# whatsmeow's classToMediaType, by the waE2E field that holds each class.
APP_INFO = {
    "imageMessage": "WhatsApp Image Keys",
    "stickerMessage": "WhatsApp Image Keys",
    "videoMessage": "WhatsApp Video Keys",
    "ptvMessage": "WhatsApp Video Keys",
    "audioMessage": "WhatsApp Audio Keys",
    "documentMessage": "WhatsApp Document Keys",
}
MESSAGE_CLASS = {
    "imageMessage": "ImageMessage",
    "stickerMessage": "StickerMessage",
    "videoMessage": "VideoMessage",
    "ptvMessage": "VideoMessage",
    "audioMessage": "AudioMessage",
    "documentMessage": "DocumentMessage",
}


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def media_server(tmp_path: Path, tls: tuple[Path, Path]) -> Iterator[MediaServer]:
    with serving(tmp_path / "served", tls) as server:
        yield server


@pytest.fixture
def fetcher(tmp_path: Path, tls: tuple[Path, Path], media_server: MediaServer) -> MediaFetcher:
    """Production's fetcher, but trusting the local server's certificate and host."""
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    return MediaFetcher(
        hosts=("localhost",),
        default_host=f"localhost:{media_server.port}",
        verify=ssl.create_default_context(cafile=str(tls[0])),
        tmpdir=str(downloads),
    )


# ---------------------------------------------------------------------- the adapter, online, no Go


@asynccontextmanager
async def online(fetcher: MediaFetcher) -> AsyncIterator[NeonizeClient]:
    """A real NeonizeClient that WhatsApp's ConnectedEv (through neonize's dispatcher) marked online."""
    client = NeonizeClient(ClientOptions(str(uuid4()), None, UNUSED_DSN), media=fetcher)
    try:
        nev.dispatch(client, nev.connected())
        assert await asyncio.wait_for(anext(aiter(client.events())), 5) == Connected()
        yield client
    finally:
        await client.stop()


async def receive(client: NeonizeClient, field_name: str, **media: Any) -> Message:
    """A media message arriving through neonize's dispatcher; the adapter's Message for it."""
    e2e = nev.lib().e2e
    sub = getattr(e2e, MESSAGE_CLASS[field_name])(mimetype="application/octet-stream", **media)
    ev = nev.message_event(
        nev.wa(**{field_name: sub}),
        chat=nev.jid(ALICE),
        sender=nev.jid(ALICE),
        id=f"3EB0{uuid4().hex[:12].upper()}",
        timestamp_ms=1_700_000_000_000,
    )
    nev.dispatch(client, ev)
    got = await asyncio.wait_for(anext(aiter(client.events())), 5)
    assert isinstance(got, MessageReceived)
    return got.message


def fields(sealed: Sealed, url: str = "", direct_path: str = "") -> dict[str, Any]:
    return {
        "URL": url,
        "directPath": direct_path,
        "mediaKey": sealed.media_key,
        "fileSHA256": sealed.file_sha256,
        "fileEncSHA256": sealed.file_enc_sha256,
        "fileLength": sealed.length,
    }


async def read_all(body: MediaBody) -> bytes:
    return b"".join([chunk async for chunk in body.chunks])


def files_left(fetcher: MediaFetcher) -> list[str]:
    """What a download left in its folder, named or anonymous but still open in this process."""
    assert fetcher.tmpdir is not None
    named = os.listdir(fetcher.tmpdir)
    open_ = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(fetcher.tmpdir):
            open_.append(target)
    return named + open_


# ---------------------------------------------------------------------- tests


@pytest.mark.parametrize("field_name", list(APP_INFO))
async def test_each_kind_downloads_to_its_exact_plaintext(
    field_name: str, media_server: MediaServer, fetcher: MediaFetcher
) -> None:
    plain = os.urandom(300_001)  # not a multiple of the block size
    sealed = seal([plain], APP_INFO[field_name], media_server.root / "m.enc")
    async with online(fetcher) as client:
        message = await receive(client, field_name, **fields(sealed, url=media_server.url("/v/t62/m.enc")))
        body = await client.download_media(message, LIMIT)
        assert body.size == len(plain)
        assert await read_all(body) == plain
    assert files_left(fetcher) == []
    assert media_server.requests == ["/v/t62/m.enc"]


async def test_a_direct_path_alone_is_fetched_from_the_media_host_with_whatsmeows_query(
    media_server: MediaServer, fetcher: MediaFetcher
) -> None:
    plain = os.urandom(70_000)
    sealed = seal([plain], APP_INFO["imageMessage"], media_server.root / "p.enc")
    async with online(fetcher) as client:
        message = await receive(client, "imageMessage", **fields(sealed, direct_path="/v/t62/p.enc?ccb=11-4"))
        assert await read_all(await client.download_media(message, LIMIT)) == plain
    (requested,) = media_server.requests
    query = parse_qs(urlsplit(requested).query, keep_blank_values=True)
    assert query["ccb"] == ["11-4"] and query["mms-type"] == ["image"] and "__wa-mms" in query
    assert query["hash"] == [base64.urlsafe_b64encode(sealed.file_enc_sha256).decode()]


async def test_without_an_address_on_whatsapps_servers_it_is_404_and_nothing_is_requested(
    media_server: MediaServer, fetcher: MediaFetcher
) -> None:
    sealed = seal([b"x" * 100], APP_INFO["imageMessage"], media_server.root / "n.enc")
    strict = dataclasses.replace(fetcher, hosts=("whatsapp.net",))
    async with online(strict) as client:
        # Neither URL nor directPath: whatsmeow's own download would fail too (ErrNoURLPresent), so the
        # adapter answers without Go and without a request.
        bare = await receive(client, "imageMessage", **fields(sealed))
        with pytest.raises(MediaNotAvailable):
            await client.download_media(bare, LIMIT)
        # A URL off WhatsApp's hosts is never fetched (a sender writes the URL).
        foreign = await receive(client, "imageMessage", **fields(sealed, url=media_server.url("/n.enc")))
        with pytest.raises(MediaNotAvailable):
            await client.download_media(foreign, LIMIT)
    assert media_server.requests == []


def tamper(sealed: Sealed, path: Path, how: str) -> Sealed:
    data = bytearray(path.read_bytes())
    if how in ("ciphertext", "ciphertext, matching fileEncSHA256"):
        data[len(data) // 2] ^= 0x01
    elif how == "MAC, matching fileEncSHA256":
        data[-1] ^= 0x01
    elif how == "truncated, matching fileEncSHA256":
        del data[-27:-10]
    path.write_bytes(bytes(data))
    if how.endswith("matching fileEncSHA256"):
        return dataclasses.replace(sealed, file_enc_sha256=hashlib.sha256(data).digest())
    if how == "fileSHA256":
        return dataclasses.replace(sealed, file_sha256=hashlib.sha256(b"something else").digest())
    return sealed


@pytest.mark.parametrize(
    ("how", "check"),
    [
        ("ciphertext", "fileEncSHA256"),
        ("ciphertext, matching fileEncSHA256", "MAC"),
        ("MAC, matching fileEncSHA256", "MAC"),
        ("truncated, matching fileEncSHA256", "MAC"),
        ("fileSHA256", "fileSHA256"),
    ],
)
async def test_a_tampered_file_is_refused_and_leaves_no_file(
    how: str, check: str, media_server: MediaServer, fetcher: MediaFetcher
) -> None:
    path = media_server.root / "t.enc"
    sealed = tamper(seal([os.urandom(200_000)], APP_INFO["documentMessage"], path), path, how)
    async with online(fetcher) as client:
        message = await receive(client, "documentMessage", **fields(sealed, url=media_server.url("/t.enc")))
        with pytest.raises(ClientError) as refused:
            await client.download_media(message, LIMIT)
    assert (refused.value.code, refused.value.http_status) == ("client_error", 502)
    assert f"({check})" in refused.value.message
    assert files_left(fetcher) == []


@pytest.mark.parametrize(
    ("path", "error"),
    [
        ("/status/404", MediaNotAvailable),
        ("/status/410", MediaNotAvailable),
        ("/status/503", ServiceUnavailable),
        ("/status/429", ServiceUnavailable),
        ("/status/403", ClientError),
        ("/gzip/r.enc", ClientError),
    ],
)
async def test_the_servers_refusals_map_to_documented_errors(
    path: str, error: type[Exception], media_server: MediaServer, fetcher: MediaFetcher
) -> None:
    sealed = seal([b"y" * 1000], APP_INFO["imageMessage"], media_server.root / "r.enc")
    async with online(fetcher) as client:
        message = await receive(client, "imageMessage", **fields(sealed, url=media_server.url(path)))
        with pytest.raises(error):
            await client.download_media(message, LIMIT)
    assert files_left(fetcher) == []


async def test_an_unreachable_server_is_503(media_server: MediaServer, fetcher: MediaFetcher) -> None:
    sealed = seal([b"z" * 1000], APP_INFO["imageMessage"], media_server.root / "u.enc")
    closed = dataclasses.replace(fetcher, default_host="localhost:1")  # nothing listens on port 1
    async with online(closed) as client:
        message = await receive(client, "imageMessage", **fields(sealed, direct_path="/u.enc"))
        with pytest.raises(ServiceUnavailable) as refused:
            await client.download_media(message, LIMIT)
    assert refused.value.http_status == 503


@pytest.mark.parametrize("kind", ["silent", "stall", "trickle"])
async def test_a_stalled_server_times_out_instead_of_hanging(
    kind: str, media_server: MediaServer, fetcher: MediaFetcher
) -> None:
    sealed = seal([os.urandom(512 * 1024)], APP_INFO["videoMessage"], media_server.root / "s.enc")
    bounded = dataclasses.replace(fetcher, read_s=0.5, total_s=2.0)
    async with online(bounded) as client:
        message = await receive(
            client, "videoMessage", **fields(sealed, url=media_server.url(f"/{kind}/s.enc"))
        )
        started = time.monotonic()
        with pytest.raises(ClientTimeout) as timed_out:
            await client.download_media(message, LIMIT)
        took = time.monotonic() - started
    assert timed_out.value.http_status == 504
    assert took < 8.0  # the read bound (silent, stall) or the whole bound (trickle); the server holds 30 s
    if kind == "trickle":
        assert took >= 2.0
    assert files_left(fetcher) == []


async def test_a_file_larger_than_its_message_says_is_refused_at_the_limit(
    media_server: MediaServer, fetcher: MediaFetcher
) -> None:
    sealed = seal([os.urandom(2 * MiB)], APP_INFO["documentMessage"], media_server.root / "l.enc")
    lying = dataclasses.replace(sealed, length=1000)  # the declared size passes the limit
    async with online(fetcher) as client:
        message = await receive(client, "documentMessage", **fields(lying, url=media_server.url("/l.enc")))
        with pytest.raises(MediaTooLarge):
            await client.download_media(message, MiB)
    assert files_left(fetcher) == []


async def test_the_sessions_media_stream_serves_a_stored_neonize_message(
    media_server: MediaServer, fetcher: MediaFetcher, database_url: str
) -> None:
    """What `SessionActor.media` runs for GET .../media: the message read back from PostgreSQL, its media
    streamed from the adapter, head first (Ray's streaming and the route are shown in test_media_download)."""
    plain = os.urandom(1_000_003)
    sealed = seal([plain], APP_INFO["documentMessage"], media_server.root / "d.enc")
    sid = await insert_session(database_url)
    async with online(fetcher) as client, SessionStore(asyncpg_dsn(database_url), sid) as store:
        message = await receive(
            client, "documentMessage", fileName="report.pdf", **fields(sealed, url=media_server.url("/d.enc"))
        )
        await store.inbox.add_message(message)
        stream = stream_media(store.inbox, lambda: client, LIMIT, message.chat_id, message.id)
        head = await anext(stream)
        got = b"".join([chunk async for chunk in stream if isinstance(chunk, bytes)])
    assert head == MediaHead("application/octet-stream", len(plain), "report.pdf")
    assert got == plain
    assert files_left(fetcher) == []


async def test_offline_is_409_before_any_request(media_server: MediaServer, fetcher: MediaFetcher) -> None:
    sealed = seal([b"q" * 1000], APP_INFO["imageMessage"], media_server.root / "o.enc")
    async with online(fetcher) as client:
        message = await receive(client, "imageMessage", **fields(sealed, url=media_server.url("/o.enc")))
        nev.dispatch(client, nev.disconnected())
        await asyncio.wait_for(anext(aiter(client.events())), 5)
        with pytest.raises(SessionNotConnected):
            await client.download_media(message, LIMIT)
    assert media_server.requests == []


def peak_rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def reset_peak() -> None:
    """Start VmHWM (peak RSS) afresh from the current RSS (Linux: clear_refs 5)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def test_a_64_mib_file_streams_in_bounded_memory(
    media_server: MediaServer, fetcher: MediaFetcher
) -> None:
    size = 64 * MiB
    block = os.urandom(MiB)
    plain = (block[i:] + block[:i] for i in range(64))  # 64 different MiB, never all in memory
    sealed = seal(plain, APP_INFO["documentMessage"], media_server.root / "big.enc")
    async with online(fetcher) as client:
        message = await receive(client, "documentMessage", **fields(sealed, url=media_server.url("/big.enc")))
        before = rss_mb()
        reset_peak()
        started = time.monotonic()
        body = await client.download_media(message, LIMIT)
        got, n = hashlib.sha256(), 0
        async for chunk in body.chunks:
            got.update(chunk)
            n += len(chunk)
        took = time.monotonic() - started
        growth = peak_rss_mb() - before
    assert n == size and got.digest() == sealed.file_sha256
    print(f"\n64 MiB downloaded, decrypted, verified and read in {took:.1f} s; peak RSS +{growth:.1f} MB")
    assert growth < 16.0
    assert files_left(fetcher) == []
