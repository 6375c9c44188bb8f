"""Profile pictures on the neonize adapter are fetched like media: only from WhatsApp's CDN hosts, no
redirect followed, bounded, and no error carries the (signed) URL. Against a local HTTPS server standing
in for the CDN, with a real NeonizeClient marked online by neonize's own ConnectedEv (no Go call)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from uuid import uuid4

import pytest

from actors.clients.neonize import NeonizeClient
from actors.clients.neonize.media_fetch import MediaFetcher
from actors.ports import ClientOptions, PictureInfo
from kernel.errors import ClientError, MediaNotAvailable, MediaTooLarge
from kernel.events import Connected
from tests import neonize_events as nev
from tests.whatsapp_media import MediaServer, self_signed, serving

UNUSED_DSN = "postgresql://nobody@127.0.0.1:1/never?sslmode=disable"
SIGNED = "?oe=67A0B1C2&oh=secret-signature"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def cdn(tmp_path: Path, tls: tuple[Path, Path]) -> Iterator[MediaServer]:
    with serving(tmp_path / "served", tls) as server:
        yield server


@asynccontextmanager
async def online(tls: tuple[Path, Path]) -> AsyncIterator[NeonizeClient]:
    fetcher = MediaFetcher(hosts=("localhost",), verify=ssl.create_default_context(cafile=str(tls[0])))
    client = NeonizeClient(ClientOptions(str(uuid4()), None, UNUSED_DSN), media=fetcher)
    try:
        nev.dispatch(client, nev.connected())
        assert await asyncio.wait_for(anext(aiter(client.events())), 5) == Connected()
        yield client
    finally:
        await client.stop()


async def test_a_picture_on_the_cdn_downloads_within_its_bound(
    cdn: MediaServer, tls: tuple[Path, Path]
) -> None:
    (cdn.root / "face.jpg").write_bytes(b"\xff\xd8\xff" + bytes(5000))
    async with online(tls) as client:
        data = await client.download_picture(PictureInfo("1", cdn.url("/plain/face.jpg" + SIGNED)), 10_000)
        with pytest.raises(MediaTooLarge):
            await client.download_picture(PictureInfo("1", cdn.url("/plain/face.jpg")), 1000)
    assert data.startswith(b"\xff\xd8\xff") and len(data) == 5003


async def test_other_hosts_redirects_and_errors_never_echo_the_url(
    cdn: MediaServer, tls: tuple[Path, Path]
) -> None:
    async with online(tls) as client:
        for elsewhere in (
            f"https://127.0.0.1:{cdn.port}/plain/x.jpg",
            f"http://localhost:{cdn.port}/plain/x",
        ):
            with pytest.raises(MediaNotAvailable):
                await client.download_picture(PictureInfo("1", elsewhere), 10_000)
        assert cdn.requests == []  # refused before any request left
        with pytest.raises(ClientError) as redirected:
            await client.download_picture(PictureInfo("1", cdn.url("/status/302" + SIGNED)), 10_000)
        with pytest.raises(ClientError) as failed:
            await client.download_picture(PictureInfo("1", cdn.url("/status/500" + SIGNED)), 10_000)
        with pytest.raises(MediaNotAvailable):
            await client.download_picture(PictureInfo("1", cdn.url("/status/404" + SIGNED)), 10_000)

    assert len(cdn.requests) == 3  # the redirect was not followed
    for err in (redirected.value, failed.value):
        assert "secret-signature" not in err.message and "localhost" not in err.message, err.message
