"""Helpers of the inbox end-to-end tests (tests/test_inbox_actions.py, tests/test_inbox_edits.py)."""

from __future__ import annotations

import random
from typing import Any

import httpx

from tests.apikit import Stack, WsFrames, new_user
from tests.raykit import eventually


async def _status(client: httpx.AsyncClient, sid: str, status: str) -> None:
    async def get() -> dict[str, Any]:
        found: dict[str, Any] = (await client.get(f"/sessions/{sid}/status")).json()
        return found

    await eventually(get, lambda s: s.get("status") == status, 30)


async def pair_session(stack: Stack) -> tuple[str, str, str]:
    """(a new user, their connected session, and a second one still showing its QR)."""
    user = new_user()
    async with stack.client(user) as client:
        sid = (await client.post("/sessions", json={})).json()["id"]
        await _status(client, sid, "qr_ready")
        scanned = await client.post(
            f"/simulator/sessions/{sid}/scan", json={"phone": f"+1415559{random.randint(1000, 9999)}"}
        )
        assert scanned.status_code == 200, scanned.text
        await _status(client, sid, "connected")
        waiting = (await client.post("/sessions", json={})).json()["id"]
        await _status(client, waiting, "qr_ready")
    return user, sid, waiting


def new_contact() -> tuple[str, str]:
    digits = f"1555{random.randint(1000000, 9999999)}"
    return f"+{digits}", f"{digits}@s.whatsapp.net"


async def incoming(client: httpx.AsyncClient, sid: str, sender: str, **body: Any) -> dict[str, Any]:
    response = await client.post(f"/simulator/sessions/{sid}/incoming", json={"from": sender, **body})
    assert response.status_code == 200, response.text
    message: dict[str, Any] = response.json()
    return message


async def stored(client: httpx.AsyncClient, sid: str, chat: str, message_id: str) -> dict[str, Any]:
    items = (await client.get(f"/sessions/{sid}/chats/{chat}/messages")).json()["items"]
    found: dict[str, Any] = next(m for m in items if m["id"] == message_id)
    return found


async def chat_of(client: httpx.AsyncClient, sid: str, chat: str) -> dict[str, Any]:
    items = (await client.get(f"/sessions/{sid}/chats", params={"limit": 500})).json()["items"]
    found: dict[str, Any] = next(c for c in items if c["id"] == chat)
    return found


async def sent(client: httpx.AsyncClient, sid: str, to: str) -> list[dict[str, Any]]:
    return [s for s in (await client.get(f"/simulator/sessions/{sid}/sent")).json() if s["to"] == to]


def update(ws: WsFrames, message_id: str, change: str, after: int = 0) -> Any:
    return ws.wait_for(
        lambda f: f["type"] == "message_update" and f["messageId"] == message_id and f["change"] == change,
        after=after,
    )


def error_code(response: httpx.Response) -> str:
    return str(response.json()["error"]["code"])
