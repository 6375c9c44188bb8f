"""Users are kept apart on every route, by one walk over the OpenAPI document.

A stranger (the same API key, another `X-User-Id`) asking for the owner's session, chat or message gets
exactly the 404 a missing id gets, on every route with such a path parameter, and the owner's data is
unchanged afterwards: nothing reached the simulated network, nothing was deleted, no pairing started. A
route with a path parameter that is not in `ROUTES` (or, for API-key-only routes, `NOT_A_USERS`) fails
the test, so routes added later are covered by construction. The same for `/ws?sessionId=`, with header
auth and with a token; and a token's socket is closed when its token expires.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from api.app import create_app
from api.auth import WsTokens
from tests import media_samples
from tests.apikit import Stack, api_stack, make_settings, new_user, websocket
from tests.raykit import eventually, local_ray

pytestmark = [pytest.mark.ray, pytest.mark.timeout(240)]

MISSING_SESSION = "00000000-0000-4000-8000-000000000000"
MISSING_MESSAGE = "3EB0000000000000000000"
RECIPIENT = "+14155550111"


@dataclass(frozen=True)
class Call:
    """A request the owner could make on their session; `on`: which of the owner's sessions the owner's
    own control call uses (the paired one, or the one still showing a QR)."""

    json: dict[str, Any] | None = None
    form: bool = False
    audio: bool = False
    on: str = "paired"
    owner_gets: frozenset[int] = field(default_factory=lambda: frozenset({200}))

    def kwargs(self) -> dict[str, Any]:
        if self.form:
            name, data, kind = (
                ("note.wav", media_samples.audio("wav", 1.0), "audio/wav")
                if self.audio
                else ("dot.png", media_samples.image("png"), "image/png")
            )
            return {"data": {"to": RECIPIENT}, "files": {"file": (name, data, kind)}}
        return {"json": self.json} if self.json is not None else {}


# Every user route with a path parameter, and a valid request for it.
ROUTES: dict[str, Call] = {
    "GET /sessions/{id}/status": Call(),
    "GET /sessions/{id}/qr.svg": Call(on="waiting"),
    "DELETE /sessions/{id}": Call(on="waiting", owner_gets=frozenset({204})),
    "POST /sessions/{id}/pairing-code": Call(json={"phone": "+14155550112"}, on="waiting"),
    "POST /sessions/{id}/reconnect": Call(on="waiting", owner_gets=frozenset({202})),
    "GET /sessions/{id}/chats": Call(),
    "GET /sessions/{id}/chats/{chatId}/messages": Call(),
    "GET /sessions/{id}/chats/{chatId}/messages/{messageId}/media": Call(),
    "POST /sessions/{id}/send/text": Call(json={"to": RECIPIENT, "text": "not yours"}),
    "POST /sessions/{id}/send/media": Call(form=True),
    "POST /sessions/{id}/send/audio": Call(form=True, audio=True),
    "POST /sessions/{id}/chats/{chatId}/read": Call(),
    "POST /sessions/{id}/chats/{chatId}/messages/{messageId}/reaction": Call(json={"emoji": "👍"}),
    # The owner's message came from the contact: the owner may not edit or delete it either.
    "PATCH /sessions/{id}/chats/{chatId}/messages/{messageId}": Call(
        json={"text": "edited"}, owner_gets=frozenset({422})
    ),
    "DELETE /sessions/{id}/chats/{chatId}/messages/{messageId}": Call(owner_gets=frozenset({422})),
    "POST /sessions/{id}/chats/{chatId}/typing": Call(
        json={"state": "composing"}, owner_gets=frozenset({204})
    ),
    # The owner's contact has no picture: the session asked WhatsApp, and there is none.
    "GET /sessions/{id}/chats/{chatId}/picture": Call(owner_gets=frozenset({404})),
    "GET /sessions/{id}/chats/{chatId}/search": Call(owner_gets=frozenset({422})),  # without ?q=
}
# Routes with a path parameter that belong to no user (API key only), and why.
NOT_A_USERS: dict[str, str] = (
    {
        f"{method} /simulator/sessions/{{id}}/{name}": "the simulated phone and network, not an inbox user"
        for method, name in (
            ("POST", "scan"),
            ("POST", "incoming"),
            ("POST", "history"),
            ("POST", "drop"),
            ("POST", "unlink"),
            ("GET", "sent"),
            ("POST", "react"),
            ("POST", "edit"),
            ("POST", "revoke"),
            ("POST", "read"),
            ("POST", "presence"),
            ("POST", "contacts"),
        )
    }
    | {
        f"{method} /ops/nodes/{{nodeId}}/drain": "operators' control of the cluster's nodes (API key only)"
        for method in ("GET", "POST", "DELETE")
    }
    | {"GET /ops/operations/{operationId}": "operators' drains and rebalances (API key only)"}
)
PARAM = re.compile(r"{(\w+)}")


@pytest.fixture(scope="module")
def stack(postgres_server: str, redis_server: str) -> Iterator[Stack]:
    # The waiting session's first QR outlives the module: it must still be showing one at the end.
    with local_ray(), api_stack(postgres_server, redis_server, session={"qr_first_s": 600.0}) as running:
        yield running


async def _status(client: httpx.AsyncClient, sid: str, status: str) -> dict[str, Any]:
    async def get() -> dict[str, Any]:
        found: dict[str, Any] = (await client.get(f"/sessions/{sid}/status")).json()
        return found

    return await eventually(get, lambda s: s.get("status") == status, 30)


async def _paired(client: httpx.AsyncClient, phone: str, slot: int = 1) -> str:
    created = await client.post("/sessions", json={"slot": slot})
    assert created.status_code == 201, created.text
    sid: str = created.json()["id"]
    await _status(client, sid, "qr_ready")
    scanned = await client.post(f"/simulator/sessions/{sid}/scan", json={"phone": phone})
    assert scanned.status_code == 200, scanned.text
    await _status(client, sid, "connected")
    return sid


@dataclass
class Owner:
    user: str
    paired: str
    waiting: str
    chat: str
    message: str


@pytest.fixture(scope="module")
async def owner(stack: Stack) -> Owner:
    """A user with a paired session holding a chat and a media message, and one showing a QR."""
    user = new_user()
    async with stack.client(user) as client:
        paired = await _paired(client, f"+1415556{random.randint(1000, 9999)}")
        media = {"type": "image", "mimetype": "image/jpeg", "fileName": "cat.jpg", "size": 2000}
        got = await client.post(
            f"/simulator/sessions/{paired}/incoming", json={"from": "+15553330001", "media": media}
        )
        assert got.status_code == 200, got.text
        waiting = (await client.post("/sessions", json={"slot": 2})).json()["id"]
        await _status(client, waiting, "qr_ready")
    return Owner(user, paired, waiting, got.json()["chatId"], got.json()["id"])


def _path(template: str, session: str, chat: str, message: str) -> str:
    return template.format(id=session, chatId=chat, messageId=message)


async def _snapshot(client: httpx.AsyncClient, owner: Owner) -> dict[str, Any]:
    """What the owner would notice changing: sessions, chats, messages, media, what the network got."""
    media = await client.get(f"/sessions/{owner.paired}/chats/{owner.chat}/messages/{owner.message}/media")
    waiting = (await client.get(f"/sessions/{owner.waiting}/status")).json()
    return {
        "sessions": [(s["id"], s["slot"], s["phone"]) for s in (await client.get("/sessions")).json()],
        "paired": (await client.get(f"/sessions/{owner.paired}/status")).json()["status"],
        "waiting": (waiting["status"], waiting["pairingCode"]),
        "chats": (await client.get(f"/sessions/{owner.paired}/chats")).json(),
        "messages": (await client.get(f"/sessions/{owner.paired}/chats/{owner.chat}/messages")).json(),
        "media": (media.status_code, media.content),
        "sent": (await client.get(f"/simulator/sessions/{owner.paired}/sent")).json(),
        "inbox": (await client.get("/inbox/chats")).json(),
    }


async def test_every_route_with_an_id_answers_a_stranger_as_for_a_missing_id(
    stack: Stack, owner: Owner
) -> None:
    async with httpx.AsyncClient(base_url=stack.base_url) as anon:
        document = (await anon.get("/openapi.json")).json()
    operations = [
        f"{method.upper()} {path}"
        for path, methods in document["paths"].items()
        for method in methods
        if PARAM.search(path)
    ]
    unlisted = [op for op in operations if op not in ROUTES and op not in NOT_A_USERS]
    assert not unlisted, f"routes with an id that this test does not cover: {unlisted}"
    assert set(ROUTES) <= set(operations), "every route in the table is still served"

    stranger = new_user()
    async with stack.client(owner.user) as mine, stack.client(stranger) as theirs:
        before = await _snapshot(mine, owner)
        assert before["media"][0] == 200 and before["messages"]["items"] and before["sent"] == []
        assert before["waiting"] == ("qr_ready", None)
        own = await _paired(theirs, f"+1415557{random.randint(1000, 9999)}")
        for op, call in ROUTES.items():
            method, template = op.split(" ", 1)
            for session in (owner.paired, owner.waiting):
                foreign = await theirs.request(
                    method, _path(template, session, owner.chat, owner.message), **call.kwargs()
                )
                missing = await theirs.request(
                    method, _path(template, MISSING_SESSION, owner.chat, owner.message), **call.kwargs()
                )
                assert foreign.status_code == 404, (op, foreign.text)
                assert foreign.json()["error"]["code"] == "session_not_found"
                assert (foreign.content, foreign.headers["content-type"]) == (
                    missing.content,
                    missing.headers["content-type"],
                ), op
            if "{chatId}" in template or "{messageId}" in template:
                # The owner's chat and message ids on the stranger's own session: as unknown as any.
                foreign = await theirs.request(
                    method, _path(template, own, owner.chat, owner.message), **call.kwargs()
                )
                missing = await theirs.request(
                    method, _path(template, own, owner.chat, MISSING_MESSAGE), **call.kwargs()
                )
                assert (foreign.status_code, foreign.content) == (missing.status_code, missing.content), op
        listed = (await theirs.get("/sessions")).json()
        assert [s["id"] for s in listed] == [own]
        assert all(c["sessionId"] == own for c in (await theirs.get("/inbox/chats")).json()["items"])

        after = await _snapshot(mine, owner)
        assert after == before, "a stranger's calls changed nothing of the owner's"

        # The same requests from the owner reach the session: the table holds calls that would act.
        ordered = sorted(ROUTES.items(), key=lambda item: item[0].startswith("DELETE"))
        for op, call in ordered:
            method, template = op.split(" ", 1)
            session = owner.waiting if call.on == "waiting" else owner.paired
            answer = await mine.request(
                method, _path(template, session, owner.chat, owner.message), **call.kwargs()
            )
            assert answer.status_code in call.owner_gets, (op, answer.text)
        sent = (await mine.get(f"/simulator/sessions/{owner.paired}/sent")).json()
        assert sorted(item["type"] for item in sent if item["action"] == "message") == [
            "audio",
            "image",
            "text",
        ]
        assert sorted(item["action"] for item in sent if item["action"] != "message") == [
            "presence",
            "reaction",
        ]


async def test_a_socket_cannot_watch_another_users_session(stack: Stack, owner: Owner) -> None:
    stranger = new_user()
    async with stack.client(stranger) as theirs:
        token = (await theirs.post("/ws-token")).json()["token"]
    closes = []
    for session in (owner.paired, MISSING_SESSION):
        for auth in ({"user": stranger}, {"token": token}):
            async with websocket(stack, session_id=session, **auth) as ws:
                code = await ws.wait_closed()
                closes.append((code, ws.closed_reason, ws.items))
    assert closes[0][0] == 1008 and not closes[0][2]
    assert all(close == closes[0] for close in closes), closes

    # Unfiltered, the stranger's socket gets nothing of the owner's sessions.
    async with stack.client(stranger) as theirs, websocket(stack, stranger) as ws:
        own = await _paired(theirs, f"+1415558{random.randint(1000, 9999)}", slot=1)
        async with stack.client(owner.user) as mine, websocket(stack, owner.user) as owners:
            said = await mine.post(
                f"/simulator/sessions/{owner.paired}/incoming", json={"from": "+15553330002", "text": "x"}
            )
            await owners.wait_for(
                lambda f: f["type"] == "message" and f["message"]["id"] == said.json()["id"]
            )
        mine_now = await theirs.post(
            f"/simulator/sessions/{own}/incoming", json={"from": "+15553330003", "text": "y"}
        )
        await ws.wait_for(lambda f: f["type"] == "message" and f["message"]["id"] == mine_now.json()["id"])
        assert {f.get("sessionId") for f in ws.items} == {own}


async def test_a_token_socket_is_closed_when_its_token_expires(stack: Stack, owner: Owner) -> None:
    lifetime = 3.0
    token, expires_at = WsTokens.from_settings(stack.settings).mint(
        owner.user, now=time.time() - stack.settings.ws_token_ttl_s + lifetime
    )
    async with websocket(stack, token=token) as ws:
        await ws.wait_for(lambda f: f["type"] == "status" and f["sessionId"] == owner.paired)
        code = await ws.wait_closed(timeout=lifetime + 30)
        closed_at = time.time()
        assert (code, ws.closed_reason) == (1008, "token expired")
        # Not before the expiry (within the event loop's timer resolution).
        assert closed_at >= expires_at - 0.05

    # A socket opened with headers has no token to expire: it stays open past that lifetime.
    async with websocket(stack, owner.user) as ws:
        await ws.wait_for(lambda f: f["type"] == "status")
        assert await ws.wait_closed(timeout=lifetime + 1) is None


async def test_the_simulator_does_not_exist_with_the_real_backend() -> None:
    settings = make_settings("postgresql://unused/x", "redis://unused", "ns", "key", wa_backend="neonize")
    app = create_app(settings)
    assert not [path for path in app.openapi()["paths"] if path.startswith("/simulator")]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        for method, path in (("POST", "/simulator/sessions/x/scan"), ("GET", "/simulator/sessions/x/sent")):
            answer = await client.request(method, path, headers={"X-API-Key": "key", "X-User-Id": "u"})
            unknown = await client.request(method, "/no/such/route", headers={"X-API-Key": "key"})
            assert answer.status_code == 404 and answer.json() == unknown.json(), path
