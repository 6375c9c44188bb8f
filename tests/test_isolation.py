"""Users are kept apart on every route, by one walk over the OpenAPI document.

A stranger (the same API key, another `X-User-Id`) asking for the owner's session, chat or message gets
exactly the 404 a missing id gets, on every route with such a path parameter, and the owner's data is
unchanged afterwards: nothing reached the simulated network, nothing was deleted, no pairing started.
The same with the stranger's own user key (no `X-User-Id`), and the owner's calls are made with the
owner's key. A route with a path parameter that is not in `ROUTES` (or, for admin-key-only routes,
`NOT_A_USERS`) fails the test, so routes added later are covered by construction.

Every route of the document is a user route, an admin route (`ADMIN_ROUTES`) or public (`PUBLIC`): a user
key naming another user in `X-User-Id` is 403 `user_mismatch` on every user route, and any user key is
403 `admin_only` on every admin route. The same for `/ws?sessionId=`, with header auth (the admin key and
a user key) and with a token; and a token's socket is closed when its token expires.
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
GROUP = "120363012345678901@g.us"


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
    "POST /sessions/{id}/send/location": Call(json={"to": RECIPIENT, "latitude": 1.5, "longitude": 2.5}),
    "POST /sessions/{id}/send/contact": Call(json={"to": RECIPIENT, "name": "Ann", "phone": "+14155550113"}),
    "POST /sessions/{id}/send/poll": Call(json={"to": RECIPIENT, "question": "Yes?", "options": ["y", "n"]}),
    "POST /sessions/{id}/contacts/check": Call(json={"phones": [RECIPIENT, "+14155550000"]}),
    # The contact routes act on the owner's contact (the chat's): a stranger's call must not block them.
    "GET /sessions/{id}/contacts/{contactId}": Call(),
    "PUT /sessions/{id}/contacts/{contactId}/block": Call(owner_gets=frozenset({204})),
    "DELETE /sessions/{id}/contacts/{contactId}/block": Call(owner_gets=frozenset({204})),
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
    # Groups are off here (INBOX_CHATS=direct): the owner's own calls are 404 groups_disabled.
    "GET /sessions/{id}/groups": Call(owner_gets=frozenset({404})),
    "POST /sessions/{id}/groups": Call(
        json={"subject": "Ours", "participants": [RECIPIENT]}, owner_gets=frozenset({404})
    ),
    "GET /sessions/{id}/groups/{groupId}": Call(owner_gets=frozenset({404})),
    "POST /sessions/{id}/groups/{groupId}/participants": Call(
        json={"participants": [RECIPIENT]}, owner_gets=frozenset({404})
    ),
    "DELETE /sessions/{id}/groups/{groupId}/participants/{participantId}": Call(owner_gets=frozenset({404})),
    "GET /sessions/{id}/groups/{groupId}/invite-link": Call(owner_gets=frozenset({404})),
    "DELETE /sessions/{id}/groups/{groupId}/invite-link": Call(owner_gets=frozenset({404})),
    # A dead proxy for the owner's number still waiting for a scan: the stranger's would show in the list.
    "PUT /sessions/{id}/proxy": Call(json={"proxy": "socks5://owner:pw-isolation@127.0.0.1:9"}, on="waiting"),
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
            ("POST", "call"),
            ("POST", "vote"),
            ("POST", "group"),
        )
    }
    | {
        f"{method} /ops/nodes/{{nodeId}}/drain": "operators' control of the cluster's nodes (API key only)"
        for method in ("GET", "POST", "DELETE")
    }
    | {"GET /ops/operations/{operationId}": "operators' drains and rebalances (API key only)"}
    | {
        "POST /users/{userId}/keys": "users' own keys, made by the admin key",
        "GET /users/{userId}/keys": "users' own keys, listed for the admin key",
        "DELETE /users/{userId}/keys/{keyId}": "users' own keys, revoked by the admin key",
    }
)
# Routes whose id is not a session's, each shown to answer a stranger as for a missing id elsewhere.
WEBHOOKS_TEST = "tests/test_webhooks_api.py::test_create_list_delete_and_the_secret_shown_once"
ELSEWHERE: dict[str, str] = {
    f"{op} /webhooks/{{id}}{rest}": WEBHOOKS_TEST for op, rest in (("DELETE", ""), ("GET", "/deliveries"))
}
PARAM = re.compile(r"{(\w+)}")
# What a user's key may never do (403 admin_only), and what needs no key at all.
ADMIN_ROUTES = ("/ops/", "/simulator/", "/users/{userId}/keys")
PUBLIC = frozenset({"GET /health", "GET /metrics"})


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


async def _paired(
    client: httpx.AsyncClient, phone: str, slot: int = 1, *, admin: httpx.AsyncClient | None = None
) -> str:
    """A connected session of the client's user; the phone's scan through `admin` (default: the client)."""
    created = await client.post("/sessions", json={"slot": slot})
    assert created.status_code == 201, created.text
    sid: str = created.json()["id"]
    await _status(client, sid, "qr_ready")
    scanned = await (admin or client).post(f"/simulator/sessions/{sid}/scan", json={"phone": phone})
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
    return template.format(
        id=session, chatId=chat, messageId=message, contactId=chat, groupId=GROUP, participantId=RECIPIENT
    )


async def _user_key(stack: Stack, user: str) -> str:
    async with stack.client() as admin:
        made = await admin.post(f"/users/{user}/keys", json={"name": "isolation"})
    assert made.status_code == 201, made.text
    key: str = made.json()["key"]
    return key


def _keyed(stack: Stack, key: str, **headers: str) -> httpx.AsyncClient:
    """A client that sends a user's own key (and no X-User-Id unless given)."""
    return httpx.AsyncClient(base_url=stack.base_url, headers={"X-API-Key": key, **headers}, timeout=60.0)


async def _operations(stack: Stack) -> list[str]:
    async with httpx.AsyncClient(base_url=stack.base_url) as anon:
        document = (await anon.get("/openapi.json")).json()
    return [f"{method.upper()} {path}" for path, methods in document["paths"].items() for method in methods]


async def _stranger_sees_as_missing(theirs: httpx.AsyncClient, owner: Owner, own: str) -> None:
    """Every route with an id answers the owner's ids to `theirs` exactly as ids that do not exist."""
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


def _any_request(op: str, owner: Owner) -> tuple[str, str, dict[str, Any]]:
    """A request on the route, on the owner's resources where it has ids (the body matters not: a key's
    standing is decided before the body is read)."""
    method, template = op.split(" ", 1)
    path = template.format(
        id=owner.paired,
        chatId=owner.chat,
        contactId=owner.chat,
        groupId=GROUP,
        participantId=RECIPIENT,
        messageId=owner.message,
        userId=owner.user,
        keyId="0123456789abcdef",
        nodeId="abcdef",
        operationId=MISSING_SESSION,
    )
    call = ROUTES.get(op, Call(json={}))
    return method, path, call.kwargs()


async def test_a_user_key_is_its_user_on_every_user_route_and_refused_on_admin_routes(
    stack: Stack, owner: Owner
) -> None:
    operations = await _operations(stack)
    admin_ops = [op for op in operations if op.split(" ", 1)[1].startswith(ADMIN_ROUTES)]
    user_ops = [op for op in operations if op not in admin_ops and op not in PUBLIC]
    assert {"GET /sessions", "POST /ws-token", "GET /me", "GET /inbox/chats"} <= set(user_ops)
    assert {"GET /ops/sessions", "POST /users/{userId}/keys"} <= set(admin_ops)

    stranger = new_user()
    key = await _user_key(stack, stranger)
    async with stack.client(owner.user) as admin, _keyed(stack, key, **{"X-User-Id": owner.user}) as posing:
        before = await _snapshot(admin, owner)
        for op in user_ops:
            method, path, kwargs = _any_request(op, owner)
            answer = await posing.request(method, path, **kwargs)
            assert answer.status_code == 403, (op, answer.text)
            assert answer.json()["error"]["code"] == "user_mismatch", op
        async with _keyed(stack, key) as theirs:
            for op in admin_ops:
                method, path, kwargs = _any_request(op, owner)
                answer = await theirs.request(method, path, **kwargs)
                assert answer.status_code == 403, (op, answer.text)
                assert answer.json()["error"]["code"] == "admin_only", op
            assert (await theirs.get("/me")).json() == {"userId": stranger, "admin": False}
            # Its WebSocket token is the stranger's, whatever it asks for.
            token = (await theirs.post("/ws-token")).json()["token"]
        assert WsTokens.from_settings(stack.settings).verify(token) == stranger
        assert await _snapshot(admin, owner) == before, "refused calls changed nothing of the owner's"
        # The admin key is every user still: it reads the keys of both.
        listed = await admin.get(f"/users/{stranger}/keys")
        assert listed.status_code == 200 and len(listed.json()) == 1 and key not in listed.text


async def test_every_route_with_an_id_answers_a_stranger_as_for_a_missing_id(
    stack: Stack, owner: Owner
) -> None:
    operations = [op for op in await _operations(stack) if PARAM.search(op)]
    unlisted = [op for op in operations if op not in ROUTES and op not in NOT_A_USERS and op not in ELSEWHERE]
    assert not unlisted, f"routes with an id that this test does not cover: {unlisted}"
    assert set(ROUTES) <= set(operations), "every route in the table is still served"

    stranger = new_user()
    stranger_key, owner_key = await _user_key(stack, stranger), await _user_key(stack, owner.user)
    async with (
        stack.client(owner.user) as admin,
        stack.client(stranger) as theirs,
        _keyed(stack, stranger_key) as theirs_by_key,
        _keyed(stack, owner_key) as mine,
    ):
        before = await _snapshot(admin, owner)
        assert before["media"][0] == 200 and before["messages"]["items"] and before["sent"] == []
        assert before["waiting"] == ("qr_ready", None)
        own = await _paired(theirs_by_key, f"+1415557{random.randint(1000, 9999)}", admin=admin)
        await _stranger_sees_as_missing(theirs, owner, own)  # the admin key with the stranger's X-User-Id
        await _stranger_sees_as_missing(theirs_by_key, owner, own)  # the stranger's own key

        after = await _snapshot(admin, owner)
        assert after == before, "a stranger's calls changed nothing of the owner's"

        # The same requests from the owner, with the owner's own key, reach the session: the table holds
        # calls that would act.
        ordered = sorted(ROUTES.items(), key=lambda item: item[0].startswith("DELETE"))
        for op, call in ordered:
            method, template = op.split(" ", 1)
            session = owner.waiting if call.on == "waiting" else owner.paired
            answer = await mine.request(
                method, _path(template, session, owner.chat, owner.message), **call.kwargs()
            )
            assert answer.status_code in call.owner_gets, (op, answer.text)
        sent = (await admin.get(f"/simulator/sessions/{owner.paired}/sent")).json()
        assert sorted(item["type"] for item in sent if item["action"] == "message") == [
            "audio",
            "contact",
            "image",
            "location",
            "poll",
            "text",
        ]
        assert sorted(item["action"] for item in sent if item["action"] != "message") == [
            "block",
            "presence",
            "reaction",
            "unblock",
        ]


async def test_a_socket_cannot_watch_another_users_session(stack: Stack, owner: Owner) -> None:
    stranger = new_user()
    async with stack.client(stranger) as theirs:
        token = (await theirs.post("/ws-token")).json()["token"]
    key = await _user_key(stack, stranger)
    closes = []
    for session in (owner.paired, MISSING_SESSION):
        for auth in ({"user": stranger}, {"token": token}, {"headers": {"X-API-Key": key}}):
            async with websocket(stack, session_id=session, **auth) as ws:
                code = await ws.wait_closed()
                closes.append((code, ws.closed_reason, ws.items))
    assert closes[0][0] == 1008 and not closes[0][2]
    assert all(close == closes[0] for close in closes), closes

    # With the stranger's key and the owner's X-User-Id, no socket at all.
    async with websocket(stack, headers={"X-API-Key": key, "X-User-Id": owner.user}) as posing:
        assert await posing.wait_closed() == 1008 and not posing.items

    # Unfiltered, the stranger's socket (by key) gets nothing of the owner's sessions.
    async with stack.client(stranger) as theirs, websocket(stack, headers={"X-API-Key": key}) as ws:
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
