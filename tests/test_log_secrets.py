"""No secret reaches a log line: the redaction itself, and the log of a real `whatsapp-bridge` run (admin
key, user keys, tokens, passwords)."""

from __future__ import annotations

import asyncio
import logging
import secrets
import shutil
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from api.localstack import free_port, ray_temp_dir
from kernel.redact import REDACTED, RedactingFormatter, redact
from tests.clikit import clean_env, command, interrupt

START_TIMEOUT_S = 120.0


@pytest.mark.parametrize(
    ("line", "secret"),
    [
        ('127.0.0.1:5 - "WebSocket /ws?token=abc.DEF-123_x&sessionId=s1" [accepted]', "abc.DEF-123_x"),
        ("GET /ws?sessionId=s1&token=tok123 HTTP/1.1", "tok123"),
        ("connecting to postgresql://bridge:pa%40ss@db:5432/bridge", "pa%40ss"),
        ("redis://:hunter2@cache:6379/0 refused", "hunter2"),
        ("headers: {'x-api-key': 'k3y-value', 'x-user-id': 'u'}", "k3y-value"),
        ("Authorization: Bearer eyJhbGci.abc", "eyJhbGci.abc"),
        ("refused wab_0123456789abcdef_Zm9v-YmFy_x9 at login", "Zm9v-YmFy_x9"),
    ],
)
def test_credential_shapes_are_redacted(line: str, secret: str) -> None:
    redacted = redact(line)
    assert secret not in redacted and REDACTED in redacted


def test_known_secrets_are_redacted_in_messages_and_tracebacks() -> None:
    formatter = RedactingFormatter("%(message)s")
    formatter.add_secrets(["s3cr3t/key+x", None, "ab"])  # None and too-short values are ignored
    try:
        raise RuntimeError("bad key s3cr3t/key+x")
    except RuntimeError as err:
        record = logging.LogRecord("t", logging.ERROR, __file__, 1, "got %s", ("s3cr3t%2Fkey%2Bx",), None)
        record.exc_info = (type(err), err, err.__traceback__)
    line = formatter.format(record)
    assert "s3cr3t" not in line and "RuntimeError" in line
    assert "about" in formatter.format(logging.makeLogRecord({"msg": "about"}))  # "ab" left alone


def _with_password(database_url: str, password: str) -> str:
    """The test database's URL with a password (the local server trusts loopback: it is ignored)."""
    parts = urlsplit(database_url)
    user = parts.username or "postgres"
    netloc = f"{user}:{password}@{parts.hostname}:{parts.port or 5432}"
    return urlunsplit(parts._replace(netloc=netloc))


def _spawn(env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(command(), env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)


@pytest.mark.ray
@pytest.mark.timeout(240)
async def test_a_real_run_logs_no_token_key_or_password(
    database_url: str, redis_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    key = secrets.token_urlsafe(24)
    password = "pw-" + secrets.token_hex(8)
    proxy_password = "px-" + secrets.token_hex(8)
    port = free_port()
    data_dir = tmp_path / "data"
    request.addfinalizer(lambda: shutil.rmtree(ray_temp_dir(data_dir.resolve() / "ray"), ignore_errors=True))
    env = clean_env(
        DATABASE_URL=_with_password(database_url, password),
        REDIS_URL=redis_url,
        WHATSAPP_BRIDGE_API_KEY=key,
        WHATSAPP_BRIDGE_PORT=str(port),
        WHATSAPP_BRIDGE_DATA_DIR=str(data_dir),
        WA_BACKEND="simulated",
        LOG_LEVEL="DEBUG",  # the most a run ever logs
    )
    log = tmp_path / "bridge.log"
    proc = _spawn(env, tmp_path, log)
    base = f"http://127.0.0.1:{port}"
    headers = {"X-API-Key": key, "X-User-Id": "log-user"}
    try:
        async with httpx.AsyncClient(base_url=base, timeout=15) as client:
            deadline = time.monotonic() + START_TIMEOUT_S
            while True:
                assert proc.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                try:
                    if (await client.get("/health")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.5)
            assert (await client.get("/sessions", headers=headers)).status_code == 200
            assert (
                await client.get("/sessions", headers={**headers, "X-API-Key": key[:-1]})
            ).status_code == 401
            token = (await client.post("/ws-token", headers=headers)).json()["token"]
            made = await client.post("/users/log-user/keys", json={"name": "logged?"}, headers=headers)
            assert made.status_code == 201, made.text
            user_key = made.json()["key"]
            by_key = {"X-API-Key": user_key}
            assert (await client.get("/sessions", headers=by_key)).status_code == 200
            assert (await client.get("/sessions", headers={"X-API-Key": user_key[:-1]})).status_code == 401
            assert (await client.post("/ws-token", headers=by_key)).status_code == 200
            listed = await client.get("/users/log-user/keys", headers=headers)
            assert listed.status_code == 200 and user_key not in listed.text and key not in listed.text
            revoked = await client.delete(f"/users/log-user/keys/{made.json()['id']}", headers=headers)
            assert revoked.status_code == 204
            assert (await client.get("/sessions", headers=by_key)).status_code == 401
            # A number behind a proxy nothing listens on: its session dials it, fails and says why.
            dead = f"socks5://log-proxy:{proxy_password}@127.0.0.1:{free_port()}"
            with_proxy = await client.post("/sessions", json={"proxy": dead}, headers=headers)
            assert with_proxy.status_code == 201, with_proxy.text
            sid = with_proxy.json()["id"]
            bad = await client.put(f"/sessions/{sid}/proxy", json={"proxy": dead + "/x"}, headers=headers)
            assert bad.status_code == 422 and proxy_password not in bad.text
            while (await client.get(f"/sessions/{sid}/status", headers=headers)).json()["reason"] is None:
                assert time.monotonic() < deadline + START_TIMEOUT_S, "the proxy's reason never showed"
                await asyncio.sleep(0.5)
            shown = await client.get(f"/sessions/{sid}/status", headers=headers)
            assert shown.json()["reason"] == "proxy_unreachable" and proxy_password not in shown.text
        ws_url = f"ws://127.0.0.1:{port}/ws?token={token}"
        async with connect(ws_url, open_timeout=10) as ws:
            await asyncio.wait_for(await ws.ping(), 10)  # accepted and open
        with pytest.raises(
            (InvalidStatus, ConnectionClosed)
        ):  # a wrong token is refused, and its value is not logged either
            async with connect(f"ws://127.0.0.1:{port}/ws?token={token}x", open_timeout=10) as ws:
                await asyncio.wait_for(ws.recv(), 10)
    finally:
        interrupt(proc, 60)
    text = log.read_text()
    assert "WebSocket /ws?token=" + REDACTED in text, "the WebSocket line is there, redacted"
    for secret in (token, key, password, user_key, user_key.split("_", 2)[2], proxy_password):
        assert secret not in text, f"a secret is in the log:\n{text[-3000:]}"
    # The session processes' own logs (Ray's files: the CLI does not stream them) hold no proxy password.
    session_logs = [p for p in ray_temp_dir(data_dir.resolve() / "ray").rglob("*.*") if p.is_file()]
    assert any("worker" in p.name for p in session_logs), "the session processes' logs were found"
    for path in session_logs:
        assert proxy_password.encode() not in path.read_bytes(), f"the proxy password is in {path}"
