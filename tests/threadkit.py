"""What the console's message tests share: a connected number, messages arriving from the simulated
network, what the network received, a chat in the list, and a file chosen in the page."""

from __future__ import annotations

from typing import Any

import httpx

from tests.consolekit import ConsolePage, new_phone
from tests.raykit import eventually


async def connected(client: httpx.AsyncClient, slot: int, name: str) -> tuple[str, str]:
    """A session in `slot`, scanned by a new phone: its id and phone."""
    phone = new_phone()
    sid = (await client.post("/sessions", json={"slot": slot})).json()["id"]
    await eventually(lambda: client.get(f"/sessions/{sid}/status"), lambda r: r.json()["qr"], 30)
    body = {"phone": phone, "displayName": name}
    assert (await client.post(f"/simulator/sessions/{sid}/scan", json=body)).status_code == 200
    await eventually(
        lambda: client.get(f"/sessions/{sid}/status"), lambda r: r.json()["status"] == "connected", 30
    )
    return sid, phone


async def incoming(client: httpx.AsyncClient, sid: str, sender: str, **body: Any) -> dict[str, Any]:
    response = await client.post(f"/simulator/sessions/{sid}/incoming", json={"from": sender, **body})
    assert response.status_code == 200, response.text
    message: dict[str, Any] = response.json()
    return message


async def sent(client: httpx.AsyncClient, sid: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = (await client.get(f"/simulator/sessions/{sid}/sent")).json()
    return items


def chat_item(console: ConsolePage, chat_jid: str, sid: str | None = None) -> Any:
    selector = f'button.chat-item[data-chat="{chat_jid}"]' + (f'[data-session="{sid}"]' if sid else "")
    return console.page.locator(selector)


# A file made in the page (large ones through Playwright's pipe are slow on a loaded machine).
CHOOSE_FILE = """(input, file) => {
    const picked = new DataTransfer();
    picked.items.add(new File([new Uint8Array(file.size)], file.name, { type: file.type }));
    input.files = picked.files;
    input.dispatchEvent(new Event("change", { bubbles: true }));
}"""
