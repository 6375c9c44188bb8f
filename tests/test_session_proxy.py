"""A proxy per number (DESIGN.md, wave 3), end to end through HTTP on the simulated network, with a real
SOCKS5 / HTTP CONNECT proxy (tests.proxykit): set at create time and later, shown without its password,
a broken one is the session's `reason` (not a silent retry), a working one recovers the number without a
scan, and bad URLs are 422 `invalid_proxy`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.apikit import Stack, api_stack, new_user
from tests.consolekit import new_phone
from tests.proxykit import closed_port, running_proxy
from tests.raykit import eventually, local_ray

pytestmark = [pytest.mark.ray, pytest.mark.timeout(150)]

SECRET = "pw-Zq81!x"  # in no answer, ever


@pytest.fixture(scope="module")
def stack(postgres_server: str, redis_server: str) -> Iterator[Stack]:
    with local_ray(), api_stack(postgres_server, redis_server, session={"backoff_base_s": 0.5}) as running:
        yield running


async def status_of(client: httpx.AsyncClient, sid: str) -> dict[str, Any]:
    response = await client.get(f"/sessions/{sid}/status")
    assert response.status_code == 200, response.text
    assert SECRET not in response.text
    found: dict[str, Any] = response.json()
    return found


async def until(client: httpx.AsyncClient, sid: str, **wanted: Any) -> dict[str, Any]:
    return await eventually(
        lambda: status_of(client, sid), lambda s: all(s[k] == v for k, v in wanted.items()), 40
    )


async def pair(client: httpx.AsyncClient, sid: str) -> None:
    await until(client, sid, status="qr_ready")
    scanned = await client.post(f"/simulator/sessions/{sid}/scan", json={"phone": new_phone()})
    assert scanned.status_code == 200, scanned.text
    await until(client, sid, status="connected")


@pytest.mark.parametrize(
    "bad",
    [
        "ftp://proxy.example.com:21",
        "socks4://proxy.example.com:1080",
        "socks5://proxy.example.com",  # no port
        "socks5://proxy.example.com:0",
        "socks5://proxy.example.com:70000",
        "socks5://proxy.example.com:port",
        "http://:8080",
        "http://proxy.example.com:8080/path",
        "http://bad_host!:8080",
        "socks5://:" + SECRET + "@proxy.example.com:1080",  # a password without a user
        "proxy.example.com:1080",
        "",
        "x" * 600,
    ],
)
async def test_a_bad_proxy_url_is_422_invalid_proxy_and_creates_nothing(stack: Stack, bad: str) -> None:
    async with stack.client(new_user()) as client:
        made = await client.post("/sessions", json={"proxy": bad})
        assert made.status_code == 422, made.text
        assert made.json()["error"]["code"] == "invalid_proxy"
        assert SECRET not in made.text
        assert (await client.get("/sessions")).json() == []


async def test_a_socks5_proxy_with_credentials_is_used_and_shown_without_its_password(stack: Stack) -> None:
    with running_proxy("socks5", "alice", SECRET) as proxy:
        async with stack.client(new_user()) as client:
            made = await client.post("/sessions", json={"proxy": proxy.url()})
            assert made.status_code == 201, made.text
            assert made.json()["proxy"] == f"socks5://alice@127.0.0.1:{proxy.port}"
            assert SECRET not in made.text
            sid = made.json()["id"]
            await pair(client, sid)
            assert proxy.connections >= 1 and proxy.auth_failures == 0
            listed = await client.get("/sessions")
            assert listed.json()[0]["proxy"] == f"socks5://alice@127.0.0.1:{proxy.port}"
            assert SECRET not in listed.text


async def test_a_dead_proxy_is_the_reason_and_a_working_one_recovers_without_a_scan(stack: Stack) -> None:
    with running_proxy("http", "bob", SECRET) as proxy:
        async with stack.client(new_user()) as client:
            sid = (await client.post("/sessions", json={})).json()["id"]
            await pair(client, sid)
            dead = f"socks5://bob:{SECRET}@127.0.0.1:{closed_port()}"
            changed = await client.put(f"/sessions/{sid}/proxy", json={"proxy": dead})
            assert changed.status_code == 200, changed.text
            assert (
                changed.json()["proxy"].startswith("socks5://bob@127.0.0.1:") and SECRET not in changed.text
            )
            broken = await until(client, sid, reason="proxy_unreachable")
            assert broken["status"] in ("disconnected", "connecting")
            # It stays said while the session retries (with its backoff), not cleared by each new dial.
            for _ in range(3):
                again = await status_of(client, sid)
                assert again["reason"] == "proxy_unreachable", again
            fixed = await client.put(f"/sessions/{sid}/proxy", json={"proxy": proxy.url()})
            assert fixed.status_code == 200, fixed.text
            back = await until(client, sid, status="connected")
            assert back["reason"] is None and back["proxy"] == f"http://bob@127.0.0.1:{proxy.port}"
            assert proxy.relayed("web.whatsapp.com:443") or proxy.targets == []  # asked, never relayed out
            assert proxy.connections >= 1


async def test_refused_credentials_are_proxy_auth_failed(stack: Stack) -> None:
    with running_proxy("http", "carol", SECRET) as proxy:
        async with stack.client(new_user()) as client:
            made = await client.post("/sessions", json={"proxy": proxy.url(password="wrong-one")})
            assert made.status_code == 201, made.text
            sid = made.json()["id"]
            await until(client, sid, reason="proxy_auth_failed")
            assert proxy.auth_failures >= 1
            fixed = await client.put(f"/sessions/{sid}/proxy", json={"proxy": proxy.url()})
            assert fixed.status_code == 200
            await until(client, sid, status="qr_ready")


async def test_null_removes_the_proxy_and_a_strangers_session_is_404(stack: Stack) -> None:
    with running_proxy("socks5") as proxy:
        async with stack.client(new_user()) as client, stack.client(new_user()) as stranger:
            sid = (await client.post("/sessions", json={"proxy": proxy.url()})).json()["id"]
            assert (await status_of(client, sid))["proxy"] == f"socks5://127.0.0.1:{proxy.port}"
            other = await stranger.put(f"/sessions/{sid}/proxy", json={"proxy": None})
            assert other.status_code == 404
            assert (await status_of(client, sid))["proxy"] is not None
            bad = await client.put(f"/sessions/{sid}/proxy", json={"proxy": "gopher://x:1"})
            assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_proxy"
            removed = await client.put(f"/sessions/{sid}/proxy", json={"proxy": None})
            assert removed.status_code == 200 and removed.json()["proxy"] is None
            await until(client, sid, status="qr_ready")
