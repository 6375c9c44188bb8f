"""A number's proxy on the neonize adapter, for real: whatsmeow's dial to WhatsApp goes through the
number's SOCKS5 / HTTP proxy (tests.proxykit, which relays to loopback only, so it refuses WhatsApp and
records the attempt), each way a proxy breaks is its own reason, and media downloads take the same proxy.

Real `connect()` attempts run in child processes (one neonize client per process, see
test_neonize_adapter); media downloads reuse test_neonize_media_fetch's local HTTPS media server.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from urllib.parse import quote

import pytest

from actors.clients.neonize import proxy as neonize_proxy
from actors.clients.neonize.media_fetch import MediaFetcher
from kernel.domain import Reason
from kernel.errors import ServiceUnavailable
from kernel.proxy import ProxySettings, parse_proxy
from persistence.migrate import auth_dsn
from tests.proxykit import closed_port, running_proxy
from tests.test_neonize_media_fetch import (  # noqa: F401 (fixtures)
    APP_INFO,
    fetcher,
    fields,
    media_server,
    online,
    read_all,
    receive,
    tls,
)
from tests.whatsapp_media import MediaServer, seal

ROOT = Path(__file__).resolve().parents[1]
SECRET = "pw-Vq2!proxy"
CHILD_TIMEOUT_S = 120

CHILD = textwrap.dedent(
    """
    import asyncio, json, logging, sys
    dsn, proxy_url, out_path, log_path = sys.argv[1:5]
    logging.basicConfig(filename=log_path, level=logging.DEBUG, format="%(name)s %(levelname)s %(message)s")

    async def main():
        from actors.clients.neonize import NeonizeClient
        from actors.ports import ClientOptions
        from kernel.proxy import parse_proxy
        client = NeonizeClient(ClientOptions("proxy-child", None, dsn, proxy=parse_proxy(proxy_url)))
        events = aiter(client.events())
        await client.connect()
        first = await asyncio.wait_for(anext(events), 60)
        await client.stop()
        with open(out_path, "w") as f:
            json.dump({"event": repr(first)}, f)

    asyncio.run(main())
    """
)


def dial(tmp_path: Path, database_url: str, proxy_url: str) -> tuple[str, str]:
    """The first event of a real neonize dial through `proxy_url`, and the child's whole log (DEBUG)."""
    out, log = tmp_path / "out.json", tmp_path / "child.log"
    args = [sys.executable, "-c", CHILD, auth_dsn(database_url), proxy_url, str(out), str(log)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, timeout=CHILD_TIMEOUT_S, check=False)
    logs = log.read_text() if log.exists() else ""
    assert proc.returncode == 0, (
        f"child exited {proc.returncode}\n{proc.stderr.decode()[-3000:]}\n{logs[-2000:]}"
    )
    return str(json.loads(out.read_text())["event"]), logs + proc.stdout.decode() + proc.stderr.decode()


def disconnected(reason: Reason) -> str:
    return f"Disconnected(reason={reason!r}, retrying=False, retry_after_s=None)"


async def test_the_whatsapp_dial_goes_through_the_numbers_socks5_proxy(
    tmp_path: Path, database_url: str
) -> None:
    with running_proxy("socks5", "alice", SECRET) as proxy:
        event, logs = await asyncio.to_thread(dial, tmp_path, database_url, proxy.url())
        assert proxy.targets == ["web.whatsapp.com:443"], "whatsmeow asked this proxy for WhatsApp"
        assert proxy.auth_failures == 0
    # The test proxy refuses to relay anywhere but loopback: a proxy that will not connect us on.
    assert event == disconnected(Reason.PROXY_REFUSED)
    assert SECRET not in logs and "connect failed (proxy_refused)" in logs


@pytest.mark.parametrize(
    ("scheme", "reason"),
    [("socks5", Reason.PROXY_AUTH_FAILED), ("http", Reason.PROXY_AUTH_FAILED)],
)
async def test_refused_credentials_are_proxy_auth_failed(
    tmp_path: Path, database_url: str, scheme: str, reason: Reason
) -> None:
    with running_proxy(scheme, "bob", SECRET) as proxy:
        event, logs = await asyncio.to_thread(
            dial, tmp_path, database_url, proxy.url(password="not-" + SECRET)
        )
        assert proxy.auth_failures == 1 and proxy.targets == []
    assert event == disconnected(reason)
    assert SECRET not in logs


@pytest.mark.parametrize("scheme", ["socks5", "http"])
async def test_nothing_listening_is_proxy_unreachable(tmp_path: Path, database_url: str, scheme: str) -> None:
    url = f"{scheme}://carol:{SECRET}@127.0.0.1:{closed_port()}"
    event, logs = await asyncio.to_thread(dial, tmp_path, database_url, url)
    assert event == disconnected(Reason.PROXY_UNREACHABLE)
    assert SECRET not in logs


@pytest.mark.parametrize(
    ("error", "reason"),
    [  # whatsmeow's errors as measured (the module docstring of actors.clients.neonize.proxy)
        ('Get "https://web.whatsapp.com/ws/chat": Forbidden', Reason.PROXY_REFUSED),
        ('Get "https://web.whatsapp.com/ws/chat": Proxy Authentication Required', Reason.PROXY_AUTH_FAILED),
        (
            "socks connect tcp p.example:1080->web.whatsapp.com:443: dial tcp: lookup p.example: no such"
            " host",
            Reason.PROXY_UNREACHABLE,
        ),
        ("failed to dial whatsapp web websocket: dial tcp: lookup web.whatsapp.com: no such host", None),
    ],
)
def test_dial_errors_map_to_proxy_reasons_only_at_the_proxy_stage(error: str, reason: Reason | None) -> None:
    http = ProxySettings("http", "p.example", 3128)
    socks = ProxySettings("socks5", "p.example", 1080)
    assert neonize_proxy.dial_reason(error, http if "Get" in error else socks) == reason
    assert neonize_proxy.dial_reason(error, None) is None  # without a proxy, never a proxy reason


# ---------------------------------------------------------------------- media through the proxy


@pytest.mark.parametrize("scheme", ["socks5", "http"])
async def test_media_downloads_go_through_the_numbers_proxy(
    scheme: str,
    media_server: MediaServer,  # noqa: F811 (the imported fixture)
    fetcher: MediaFetcher,  # noqa: F811
) -> None:
    plain = os.urandom(200_003)
    sealed = seal([plain], APP_INFO["imageMessage"], media_server.root / "m.enc")
    with running_proxy(scheme, "dave", SECRET) as proxy:
        async with online(fetcher, parse_proxy(proxy.url())) as client:
            message = await receive(
                client, "imageMessage", **fields(sealed, url=media_server.url("/v/t62/m.enc"))
            )
            assert await read_all(await client.download_media(message, 100 * 1024 * 1024)) == plain
        assert proxy.targets == [f"localhost:{media_server.port}"], "the download was relayed by the proxy"
    assert media_server.requests == ["/v/t62/m.enc"]


async def test_a_dead_proxy_makes_media_unavailable_without_naming_it(
    media_server: MediaServer,  # noqa: F811 (the imported fixture)
    fetcher: MediaFetcher,  # noqa: F811
) -> None:
    sealed = seal([b"x" * 1000], APP_INFO["documentMessage"], media_server.root / "d.enc")
    dead = parse_proxy(f"socks5://erin:{SECRET}@127.0.0.1:{closed_port()}")
    async with online(fetcher, dead) as client:
        message = await receive(
            client, "documentMessage", **fields(sealed, url=media_server.url("/v/t62/d.enc"))
        )
        with pytest.raises(ServiceUnavailable) as caught:
            await client.download_media(message, 1024 * 1024)
    assert SECRET not in str(caught.value) and "127.0.0.1" not in str(caught.value)
    assert media_server.requests == []


def test_the_fetcher_never_shows_the_proxy_password() -> None:
    with_proxy = neonize_proxy.fetcher(MediaFetcher(), parse_proxy(f"http://u:{SECRET}@p.example:3128"))
    assert with_proxy.proxy == f"http://u:{quote(SECRET, safe='')}@p.example:3128"
    assert "pw-Vq2" not in repr(with_proxy)
