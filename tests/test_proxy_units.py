"""A number's proxy without Ray: the URL's rules (`kernel.proxy`), the simulated network's dial through a
real SOCKS5 / HTTP CONNECT proxy (`actors.clients.simulated.proxy`), and the password kept out of logs."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import uuid
from collections.abc import AsyncIterator
from urllib.parse import quote

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from actors.clients.simulated.proxy import check_proxy
from kernel import redact
from kernel.domain import Reason
from kernel.errors import InvalidProxy, SessionNotFound
from kernel.proxy import ProxySettings, parse_proxy
from persistence import repo, session_proxy
from persistence.db import create_engine, session_factory
from persistence.session_store import SessionStore
from tests.proxykit import closed_port, running_proxy

SECRET = "s3cr3t/p@ss:word"


def test_a_socks5_url_with_credentials_is_read_and_shown_without_its_password() -> None:
    proxy = parse_proxy("SOCKS5://al%40ice:s3cr3t%2Fp%40ss%3Aword@Proxy.Example.com:1080")
    assert proxy == ProxySettings("socks5", "proxy.example.com", 1080, "al@ice", SECRET)
    assert proxy.public == "socks5://al%40ice@proxy.example.com:1080"
    assert "s3cr3t" not in proxy.public and "s3cr3t" not in repr(proxy)
    assert parse_proxy(proxy.url) == proxy  # the URL handed to the client reads back the same


@pytest.mark.parametrize(
    ("text", "public"),
    [
        ("http://10.0.0.5:3128", "http://10.0.0.5:3128"),
        ("http://u@[2001:db8::1]:8080", "http://u@[2001:db8::1]:8080"),
        ("socks5://proxy.internal:1080/", "socks5://proxy.internal:1080"),
    ],
)
def test_accepted_forms(text: str, public: str) -> None:
    assert parse_proxy(text).public == public


@pytest.mark.parametrize(
    "text",
    [
        "https://proxy:443",
        "socks5h://proxy:1080",
        "socks5://proxy",
        "socks5://proxy:0",
        "socks5://proxy:65536",
        "socks5://proxy:-1",
        "socks5://proxy:12ab",
        "http://:8080",
        "http://pro xy:8080",
        "http://proxy:8080?x=1",
        "http://proxy:8080#f",
        "http://[::1:8080",
        "http://-bad-.example:80",
        "socks5://:pw@proxy:1080",
        "socks5://" + "u" * 256 + ":p@proxy:1080",
        "http://proxy\x00:80",
        "   ",
    ],
)
def test_rejected_forms_are_invalid_proxy_without_the_url_in_the_message(text: str) -> None:
    with pytest.raises(InvalidProxy) as caught:
        parse_proxy(text)
    assert caught.value.code == "invalid_proxy" and caught.value.http_status == 422
    assert "pw" not in caught.value.message and "proxy:" not in caught.value.message


def test_a_hidden_secret_leaves_no_log_line_and_keeps_each_handlers_format(
    caplog: pytest.LogCaptureFixture,
) -> None:
    root = logging.getLogger()
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("FMT %(message)s"))
    root.addHandler(handler)
    try:
        redact.hide([SECRET])
        record = logging.makeLogRecord({"msg": "dial via %s failed: %s", "args": ("x", f"auth {SECRET}")})
        line = handler.format(record)
        assert line.startswith("FMT ") and SECRET not in line and redact.REDACTED in line
        url_line = handler.format(logging.makeLogRecord({"msg": "socks5://bob:hunter22@h:1 refused"}))
        assert "hunter22" not in url_line
    finally:
        root.removeHandler(handler)


# ---------------------------------------------------------------------- the simulated network's dial


async def test_a_working_socks5_proxy_with_credentials_lets_the_dial_through() -> None:
    with running_proxy("socks5", "alice", SECRET) as proxy:
        assert await check_proxy(parse_proxy(proxy.url())) is None
        assert proxy.connections == 1 and proxy.auth_failures == 0


async def test_socks5_refusals_are_proxy_auth_failed() -> None:
    with running_proxy("socks5", "alice", SECRET) as proxy:
        assert await check_proxy(parse_proxy(proxy.url(password="nope"))) == Reason.PROXY_AUTH_FAILED
        no_creds = ProxySettings("socks5", "127.0.0.1", proxy.port)
        assert await check_proxy(no_creds) == Reason.PROXY_AUTH_FAILED
        assert proxy.auth_failures == 2


async def test_an_http_proxy_407_is_proxy_auth_failed_and_its_answer_otherwise_lets_through() -> None:
    with running_proxy("http", "bob", SECRET) as proxy:
        assert await check_proxy(parse_proxy(proxy.url(password="nope"))) == Reason.PROXY_AUTH_FAILED
        # The test proxy refuses to relay to WhatsApp (403): it took the credentials, which is the rule.
        assert await check_proxy(parse_proxy(proxy.url())) is None
        assert proxy.targets == ["web.whatsapp.com:443"]


async def test_nothing_listening_is_proxy_unreachable() -> None:
    dead = ProxySettings("socks5", "127.0.0.1", closed_port())
    assert await check_proxy(dead) == Reason.PROXY_UNREACHABLE
    assert await check_proxy(ProxySettings("http", "no-such-host.invalid", 3128)) == Reason.PROXY_UNREACHABLE


async def test_a_server_that_is_not_a_proxy_is_proxy_refused() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def babble() -> None:
        for _ in range(2):
            conn, _ = server.accept()
            conn.recv(1024)
            conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")
            conn.close()

    thread = threading.Thread(target=babble, daemon=True)
    thread.start()
    try:
        assert await check_proxy(ProxySettings("http", "127.0.0.1", port)) == Reason.PROXY_REFUSED
        assert await check_proxy(ProxySettings("socks5", "127.0.0.1", port)) == Reason.PROXY_REFUSED
    finally:
        await asyncio.to_thread(thread.join, 5)
        server.close()


# ---------------------------------------------------------------------- PostgreSQL


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[AsyncSession]:
    engine = create_engine(database_url, pool_size=2, max_overflow=0)
    async with session_factory(engine)() as session:
        yield session
    await engine.dispose()


async def test_the_proxy_is_stored_apart_from_its_password_and_a_restarted_session_reads_both(
    db: AsyncSession, database_url: str
) -> None:
    user = f"proxy-{uuid.uuid4().hex[:8]}"
    proxy = parse_proxy(f"socks5://alice:{quote(SECRET, safe='')}@proxy.example.com:1080")
    view = await repo.create_session(db, user, None, 3, proxy=proxy)
    assert view.proxy == "socks5://alice@proxy.example.com:1080"
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow("SELECT * FROM whatsapp_session WHERE id = $1::uuid", view.id)
        assert SECRET not in str(dict(row)), "the row every read selects has no password"
        await conn.execute(
            "UPDATE whatsapp_session SET reason = 'proxy_unreachable', connect_failures = 4"
            " WHERE id = $1::uuid",
            view.id,
        )
    finally:
        await conn.close()
    async with SessionStore(database_url, view.id) as store:  # what a (re)started session process loads
        loaded = await store.load()
    assert loaded is not None and loaded.proxy == proxy and loaded.proxy.password == SECRET
    # The same again changes nothing; another clears the old one's failure and dials at once.
    assert not await session_proxy.set_proxy(db, user, view.id, proxy)
    other = parse_proxy("http://10.0.0.9:3128")
    assert await session_proxy.set_proxy(db, user, view.id, other)
    async with SessionStore(database_url, view.id) as store:
        loaded = await store.load()
    assert loaded is not None and loaded.proxy == other
    assert loaded.view.reason is None and loaded.connect_failures == 0
    with pytest.raises(SessionNotFound):
        await session_proxy.set_proxy(db, "someone-else", view.id, None)
    assert await session_proxy.set_proxy(db, user, view.id, None)
    listed = await repo.list_sessions(db, user)
    assert [v.proxy for v in listed] == [None]
