"""The front end's parts without Ray: tokens, key checks, the upload parser, JSON shapes, error
rendering, the event hub's fan-out and polling, and 503s when a backing service is gone.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest
from pydantic import SecretStr
from redis.asyncio import Redis
from starlette.requests import Request

from api.app import create_app
from api.auth import WsTokens, api_key_matches
from api.database import Database
from api.eventlog import parse_cursor
from api.hub import EventHub, frame_text
from api.metrics import Metrics
from api.owners import SessionOwners
from api.schemas import ChatOut, MessageOut, SessionOut
from api.uploads import read_upload
from kernel.domain import Chat, Media, Message, MessageStatus, MessageType, Reason, SessionStatus, SessionView
from kernel.errors import InvalidInput, MediaTooLarge
from kernel.settings import Settings, asyncpg_dsn
from kernel.wire import EVENTS_STREAM, chat_json, event_fields, message_json, session_json
from persistence.db import create_engine, session_factory
from persistence.reads import sessions_shown
from tests.raykit import insert_session

KEY = "unit-test-key"


def settings(**values: Any) -> Settings:
    base: dict[str, Any] = {
        "whatsapp_bridge_api_key": SecretStr(KEY),
        "ws_token_ttl_s": 60,
        "wa_backend": "simulated",
    }
    return Settings(_env_file=None, **(base | values))


# --- auth --------------------------------------------------------------------------------------------------


def test_ws_tokens_name_their_user_expire_and_cannot_be_forged() -> None:
    tokens = WsTokens.from_settings(settings())
    token, exp = tokens.mint("alice", now=1000.0)
    assert exp == 1060
    assert tokens.verify(token, now=1059.0) == "alice"
    assert tokens.verify(token, now=1060.0) is None  # expired
    payload, _, signature = token.partition(".")
    other_payload, _, _ = tokens.mint("mallory", now=1000.0)[0].partition(".")
    assert tokens.verify(f"{other_payload}.{signature}", now=1001.0) is None  # someone else's claims
    assert tokens.verify(f"{payload}.{signature[:-2]}AA", now=1001.0) is None
    other_key = WsTokens.from_settings(settings(whatsapp_bridge_api_key=SecretStr("another-key")))
    assert other_key.verify(token, now=1001.0) is None
    for garbage in ("", ".", "abc", "a.b.c", "%%%.%%%"):
        assert tokens.verify(garbage, now=1001.0) is None
    assert KEY not in token


def test_api_key_is_compared_exactly_and_a_missing_key_admits_nobody() -> None:
    configured = settings()
    assert api_key_matches(configured, KEY)
    for wrong in (None, "", KEY[:-1], KEY + "x", KEY.upper(), "ключ"):
        assert not api_key_matches(configured, wrong)
    assert not api_key_matches(settings(whatsapp_bridge_api_key=None), "")


# --- uploads -----------------------------------------------------------------------------------------------


def _request(
    chunks: list[bytes], content_type: str, content_length: int | None = None
) -> tuple[Request, list[int]]:
    """A request whose body arrives in `chunks`; the list counts how many were read."""
    read = [0]
    headers = [(b"content-type", content_type.encode())]
    if content_length is not None:
        headers.append((b"content-length", str(content_length).encode()))

    async def receive() -> dict[str, Any]:
        index = read[0]
        read[0] += 1
        if index >= len(chunks):
            return {"type": "http.request", "body": b"", "more_body": False}
        return {"type": "http.request", "body": chunks[index], "more_body": index + 1 < len(chunks)}

    scope = {"type": "http", "method": "POST", "path": "/", "headers": headers, "query_string": b""}
    return Request(scope, receive), read


def _form(*parts: tuple[str, str | None, bytes]) -> bytes:
    body = b""
    for name, file_name, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{file_name}"' if file_name else "")
        body += f"--xyz\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n"
    return body + b"--xyz--\r\n"


MULTIPART = "multipart/form-data; boundary=xyz"


async def test_upload_parser_reads_fields_and_the_file() -> None:
    body = _form(
        ("to", None, b"+15551234567"),
        ("caption", None, "é".encode()),
        ("file", "a.bin", b"\x01" * 5000),
    )
    request, _ = _request([body[i : i + 333] for i in range(0, len(body), 333)], MULTIPART)
    upload = await read_upload(request, max_file_bytes=5000)
    assert upload.fields == {"to": "+15551234567", "caption": "é"}
    assert upload.file is not None and upload.file.data == b"\x01" * 5000 and upload.file.file_name == "a.bin"


async def test_upload_parser_never_holds_more_than_the_limit() -> None:
    head = _form(("to", None, b"+15551234567"))[: -len(b"--xyz--\r\n")]
    head += b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="big"\r\n\r\n'
    megabyte = b"\0" * 1024 * 1024
    chunks = [head] + [megabyte] * 40
    request, read = _request(chunks, MULTIPART)
    tracemalloc.start()
    try:
        with pytest.raises(MediaTooLarge):
            await read_upload(request, max_file_bytes=1024 * 1024)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 6 * 1024 * 1024, f"{peak} bytes held for a 40 MB body"
    assert read[0] <= 3, "reading stops as soon as the file passes the limit"

    request, read = _request(chunks, MULTIPART, content_length=10**9)
    with pytest.raises(MediaTooLarge):
        await read_upload(request, max_file_bytes=10_000)
    assert read[0] == 0, "a declared length over the limit is refused before reading"


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"{}", "application/json"),
        (b"x", "multipart/form-data"),  # no boundary
        (_form(("to", None, b"x"))[:-12], MULTIPART),  # truncated
        (_form(("file", "a", b"1"), ("file", "b", b"2")), MULTIPART),
        (_form(("to", None, b"\xff\xfe")), MULTIPART),
        (_form(("to", None, b"a\0b")), MULTIPART),
        (_form(("caption", None, b"x" * 300_000)), MULTIPART),
        (_form(*[(f"f{i}", None, b"x") for i in range(9)]), MULTIPART),
        (b"--xyz\r\nContent-Disposition: form-data\r\n\r\nx\r\n--xyz--\r\n", MULTIPART),
    ],
)
async def test_upload_parser_refuses_malformed_forms(body: bytes, content_type: str) -> None:
    request, _ = _request([body], content_type)
    with pytest.raises(InvalidInput):
        await read_upload(request, max_file_bytes=1000)


# --- JSON shapes -------------------------------------------------------------------------------------------


def test_wire_json_is_exactly_what_the_response_models_document() -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    message = Message(
        id="M1",
        chat_id="15551234567@s.whatsapp.net",
        sender="15551234567@s.whatsapp.net",
        from_me=False,
        timestamp=now,
        type=MessageType.AUDIO,
        media=Media("audio/ogg; codecs=opus", None, 1234, 3, True),
        status=MessageStatus.PLAYED,
    )
    chat = Chat("15551234567@s.whatsapp.net", "Bea", False, 2, now, message)
    view = SessionView(
        "s1",
        "u1",
        1,
        SessionStatus.DISCONNECTED,
        Reason.LOGGED_OUT,
        None,
        None,
        None,
        now,
        qr="QR",
        pairing_code="X",
    )
    for model, rendered in (
        (MessageOut, message_json(message)),
        (ChatOut, chat_json(chat)),
        (SessionOut, session_json(view)),
    ):
        assert model.model_validate(rendered).model_dump(mode="json") == rendered
    assert message_json(message)["timestamp"] == "2026-01-02T03:04:05.678Z"


# --- the app without Ray -----------------------------------------------------------------------------------


@pytest.fixture
async def asgi(database_url: str, redis_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """The app in-process (no Ray connected), its lifespan running."""
    app = create_app(settings(database_url=database_url, redis_url=redis_url))
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://api") as client,
    ):
        client.headers.update({"X-API-Key": KEY, "X-User-Id": "u1"})
        yield client


async def test_every_error_has_the_documented_shape(asgi: httpx.AsyncClient) -> None:
    cases = [
        ("GET", "/nowhere", None, 404, "not_found"),
        ("PATCH", "/sessions", None, 405, "method_not_allowed"),
        ("POST", "/sessions", {"slot": "one"}, 422, "invalid_request"),
        ("POST", "/sessions", {"slot": 0}, 400, "invalid_slot"),
        ("PUT", "/users/me/whatsapp-phone", {"phone": "nope"}, 422, "invalid_phone"),
        ("PUT", "/users/me/whatsapp-phone", {}, 422, "invalid_request"),
        ("GET", "/sessions/not-a-uuid/status", None, 404, "session_not_found"),
        ("GET", "/inbox/chats?limit=0", None, 422, "invalid_request"),
    ]
    for method, path, body, status, code in cases:
        response = await asgi.request(method, path, json=body)
        assert response.status_code == status, (path, response.text)
        error = response.json()["error"]
        assert (
            error["code"] == code and isinstance(error["message"], str) and set(error) == {"code", "message"}
        )
    bad_user = await asgi.get("/sessions", headers={"X-User-Id": "a\tb"})
    assert bad_user.status_code == 422


async def test_a_session_whose_actor_cannot_be_reached_reads_from_the_store_and_acts_503_not_500(
    asgi: httpx.AsyncClient,
) -> None:
    created = await asgi.post("/sessions", json={})  # no registry reachable: reconcile starts it later
    assert created.status_code == 201, created.text
    sid = created.json()["id"]
    status = await asgi.get(f"/sessions/{sid}/status")  # answered from the stored row meanwhile
    assert status.status_code == 200, status.text
    assert status.json() == {**created.json(), "qr": None, "pairingCode": None, "live": False}
    chats = await asgi.get(f"/sessions/{sid}/chats")  # reads never need the session's process
    assert chats.status_code == 200 and chats.json() == {"items": [], "nextCursor": None}, chats.text
    for method, path in (
        ("POST", f"/sessions/{sid}/pairing-code"),
        ("DELETE", f"/sessions/{sid}"),
    ):
        body = {"phone": "+14155552671"} if method == "POST" else None
        response = await asgi.request(method, path, json=body)
        assert response.status_code == 503, (path, response.text)
        assert response.headers["retry-after"]
    assert (await asgi.get("/sessions")).json()[0]["id"] == sid


@pytest.fixture
def dead_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]  # bound, never listening: connections are refused


async def test_a_database_that_is_down_gives_503_quickly(redis_url: str, dead_port: int) -> None:
    app = create_app(
        settings(database_url=f"postgresql://postgres@127.0.0.1:{dead_port}/x", redis_url=redis_url)
    )
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://api") as client,
    ):
        started = time.monotonic()
        response = await client.get("/sessions", headers={"X-API-Key": KEY, "X-User-Id": "u1"})
        assert response.status_code == 503 and response.json()["error"]["code"] == "service_unavailable"
        assert response.headers["retry-after"] and time.monotonic() - started < 5
        assert (await client.get("/metrics")).status_code == 200


# --- the event hub -----------------------------------------------------------------------------------------


def _view(sid: str, user: str, status: SessionStatus = SessionStatus.QR_READY) -> SessionView:
    return SessionView(sid, user, 1, status, None, None, None, None, None)


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    engine = create_engine(database_url)
    yield Database(session_factory(engine))
    await engine.dispose()


def _hub(redis_url: str, database: Database, **kw: Any) -> EventHub:
    metrics = Metrics()
    return EventHub(redis_url, database, SessionOwners(database), metrics, **kw)


async def test_a_slow_client_is_dropped_and_never_delays_the_others(
    redis_url: str, database: Database
) -> None:
    hub = _hub(redis_url, database, queue_frames=4)
    hub.start()
    try:
        sid = "5e55e55e-0000-4000-8000-000000000001"
        slow = hub.subscribe("u1", None, [_view(sid, "u1")])
        fast = hub.subscribe("u1", sid, [_view(sid, "u1")])
        stranger = hub.subscribe("u2", None, [])
        await _wait(lambda: hub.redis_up)
        received: list[dict[str, Any]] = []

        async def drain() -> None:
            while True:
                received.append(json.loads(await fast.queue.get()))

        reader = asyncio.create_task(drain())
        async with Redis.from_url(redis_url) as redis:  # as a session's bus logs its events
            for n in range(20):
                body = json.dumps({"chatId": "c", "message": {"n": n}})
                fields = event_fields(sid, "msg", body, "p", n)
                await redis.xadd(EVENTS_STREAM, dict(zip(fields[::2], fields[1::2], strict=True)))
            other = event_fields("5e55e55e-0000-4000-8000-00000000ffff", "status", '{"status":"x"}', "q", 1)
            await redis.xadd(EVENTS_STREAM, dict(zip(other[::2], other[1::2], strict=True)))
        await _wait(lambda: len(received) == 20)
        reader.cancel()
        assert [f["message"]["n"] for f in received] == list(range(20))
        cursor = received[0].pop("cursor")
        assert received[0] == {"type": "message", "sessionId": sid, "chatId": "c", "message": {"n": 0}}
        cursors = [cursor] + [f["cursor"] for f in received[1:]]
        assert len(set(cursors)) == 20 and cursors == sorted(cursors, key=parse_cursor)
        assert slow.dropped.is_set() and slow.queue.qsize() == 4
        assert not fast.dropped.is_set()
        assert stranger.queue.empty()
    finally:
        await hub.stop()


async def test_a_resuming_sockets_snapshot_carries_its_own_cursor_so_a_drop_before_its_replay_loses_nothing(
    database_url: str, database: Database, redis_url: str
) -> None:
    hub = _hub(redis_url, database)
    user = f"u-{time.monotonic_ns()}"
    await insert_session(database_url, user)
    sessions = await database.run(sessions_shown, user)
    resuming = hub.subscribe(user, None, sessions, cursor="1700000000000-3")
    fresh = hub.subscribe(user, None, sessions)
    assert [json.loads(f)["cursor"] for f in hub.snapshot(resuming, sessions)] == ["1700000000000-3"]
    assert [json.loads(f)["cursor"] for f in hub.snapshot(fresh, sessions)] == [hub.position]


async def test_without_redis_or_any_session_process_status_and_qr_are_polled_from_the_store_once_each(
    database_url: str, database: Database, dead_port: int
) -> None:
    """No Ray at all: the snapshot and the polled frames are the row and its heartbeat."""
    hub = _hub(f"redis://127.0.0.1:{dead_port}/0", database)
    user = f"u-{time.monotonic_ns()}"
    sid = await insert_session(database_url, user)
    sessions = await database.run(sessions_shown, user)
    sub = hub.subscribe(user, None, sessions)
    frames = hub.snapshot(sub, sessions)
    assert [json.loads(f)["status"] for f in frames] == ["disconnected"]

    await hub.poll_once()
    assert sub.queue.empty(), "nothing changed"
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        # What a process that then died showed: a QR code, in a beat that has not run out.
        await conn.execute("UPDATE whatsapp_session SET status = 'qr_ready' WHERE id = $1", sid)
        await conn.execute(
            "INSERT INTO session_heartbeat (session_id, process, beat_until, connected, qr, qr_expires_at)"
            " VALUES ($1, 'gone', now() + interval '1 hour', false, 'QR-1', now() + interval '1 minute')",
            sid,
        )
        await hub.poll_once()
        polled = [json.loads(sub.queue.get_nowait()) for _ in range(sub.queue.qsize())]
        assert [(f["type"], f.get("status"), f.get("qr")) for f in polled] == [
            ("status", "qr_ready", None),
            ("qr", None, "QR-1"),
        ]
        fresh = hub.subscribe(user, sid, await database.run(sessions_shown, user))
        snapshot = [json.loads(f) for f in hub.snapshot(fresh, await database.run(sessions_shown, user))]
        assert [f["type"] for f in snapshot] == ["status", "qr"] and snapshot[1]["qr"] == "QR-1"

        await conn.execute(
            "UPDATE whatsapp_session SET status = 'connected', phone = '+15550001111' WHERE id = $1", sid
        )
        await conn.execute("UPDATE session_heartbeat SET qr = NULL WHERE session_id = $1", sid)
    finally:
        await conn.close()
    await hub.poll_once()
    await hub.poll_once()
    assert sub.queue.qsize() == 1
    frame = json.loads(sub.queue.get_nowait())
    assert frame.pop("cursor") == "0-0"  # no event log: the start
    assert frame == {
        "type": "status", "sessionId": sid, "status": "connected", "reason": None, "phone": "+15550001111",
        "displayName": None,
    }  # fmt: skip


def test_frames_carry_type_and_session_first() -> None:
    text = frame_text("qr", "s1", {"qr": "abc", "expiresAt": "2026-01-01T00:00:00.000Z"}, cursor="1-0")
    assert text.startswith('{"type":"qr","sessionId":"s1",')


async def _wait(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def test_an_error_on_a_websocket_is_answered_and_logged_without_a_method(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A WebSocket's scope has no HTTP method: the error handler still logs and answers (it raised before)."""
    from starlette.websockets import WebSocket

    from api.errors import unexpected

    async def never() -> Any:
        raise AssertionError("not read")

    scope = {"type": "websocket", "path": "/ws", "query_string": b"", "headers": [], "server": ("t", 80)}
    websocket = WebSocket(scope, receive=never, send=never)
    answered = await unexpected(websocket, RuntimeError("boom"))  # type: ignore[arg-type]
    assert answered.status_code == 500
    assert "WEBSOCKET /ws failed: RuntimeError" in caplog.text
