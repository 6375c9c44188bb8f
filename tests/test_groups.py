"""Groups over HTTP and WebSocket with INBOX_CHATS=all, on the simulated network: create one, list it,
read it, add and remove participants, get and revoke its invite link; another member renames it and
comes and goes (each a `chat` frame with `group`, the stored chat renamed); and the refusals a client
must tell apart (not an admin, not a group, not in it, not a participant, a bad body). With
INBOX_CHATS=direct every group route is 404 `groups_disabled` (tests/test_send_kinds.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.apikit import Stack, api_stack, websocket
from tests.inboxkit import new_contact, pair_session
from tests.raykit import eventually, local_ray

pytestmark = [pytest.mark.ray, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def stack(postgres_server: str, redis_server: str) -> Iterator[Stack]:
    with local_ray(), api_stack(postgres_server, redis_server, session={"inbox_chats": "all"}) as running:
        yield running


@pytest.fixture(scope="module")
async def paired(stack: Stack) -> tuple[str, str]:
    user, sid, _waiting = await pair_session(stack)
    return user, sid


async def _chat(client: httpx.AsyncClient, sid: str, chat_id: str, name: str) -> dict[str, Any]:
    async def listing() -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = (await client.get(f"/sessions/{sid}/chats")).json()["items"]
        return items

    chats = await eventually(
        listing, lambda cs: any(c["id"] == chat_id and c["name"] == name for c in cs), 15
    )
    found: dict[str, Any] = next(c for c in chats if c["id"] == chat_id)
    return found


async def test_create_list_read_add_remove_and_the_invite_link(stack: Stack, paired: tuple[str, str]) -> None:
    user, sid = paired
    (bob, bob_jid), (carol, carol_jid) = new_contact(), new_contact()
    async with stack.client(user) as client, websocket(stack, user) as ws:
        made = await client.post(f"/sessions/{sid}/groups", json={"subject": "Family", "participants": [bob]})
        assert made.status_code == 201, made.text
        group = made.json()
        gid = group["id"]
        created = await ws.wait_for(lambda f: f["type"] == "chat" and f["chatId"] == gid)
        chat = await _chat(client, sid, gid, "Family")

        added = await client.post(
            f"/sessions/{sid}/groups/{gid}/participants", json={"participants": [carol, bob, "+15550000000"]}
        )
        joined = await ws.wait_for(
            lambda f: f["type"] == "chat" and f["chatId"] == gid and carol_jid in f["group"]["joined"]
        )
        link = await client.get(f"/sessions/{sid}/groups/{gid}/invite-link")
        revoked = await client.delete(f"/sessions/{sid}/groups/{gid}/invite-link")
        again = await client.get(f"/sessions/{sid}/groups/{gid}/invite-link")
        removed = await client.delete(f"/sessions/{sid}/groups/{gid}/participants/{bob}")
        listed = await client.get(f"/sessions/{sid}/groups")
        read = await client.get(f"/sessions/{sid}/groups/{gid}")

    own = next(p for p in group["participants"] if p["superAdmin"])
    assert gid.endswith("@g.us") and group["subject"] == "Family" and group["admins"] == [own["id"]]
    assert [p["id"] for p in group["participants"]] == [own["id"], bob_jid]
    assert created["name"] == "Family" and created["group"]["subject"] == "Family"
    assert chat["isGroup"] and chat["unreadCount"] == 0
    assert added.status_code == 200, added.text
    assert added.json()["items"] == [
        {"id": carol_jid, "ok": True, "error": None},
        {"id": bob_jid, "ok": False, "error": "already_in_group"},
        {"id": "15550000000@s.whatsapp.net", "ok": False, "error": "not_on_whatsapp"},
    ]
    assert joined["group"]["by"] == own["id"]
    assert link.status_code == revoked.status_code == again.status_code == 200
    assert link.json()["link"].startswith("https://chat.whatsapp.com/")
    assert revoked.json()["link"] != link.json()["link"] and again.json() == revoked.json()
    assert removed.status_code == 204, removed.text
    assert [g["id"] for g in listed.json()["items"]] == [gid]
    assert [(p["id"], p["phone"]) for p in read.json()["participants"]] == [
        (own["id"], own["phone"]),
        (carol_jid, carol),
    ]


async def test_another_member_renames_the_group_and_people_come_and_go(
    stack: Stack, paired: tuple[str, str]
) -> None:
    user, sid = paired
    (alice, alice_jid), (dan, dan_jid) = new_contact(), new_contact()
    gid = "120363011112222333@g.us"
    async with stack.client(user) as client, websocket(stack, user) as ws:
        # Alice adds this number to her group: the group's chat appears with its subject.
        added = await client.post(
            f"/simulator/sessions/{sid}/group", json={"group": gid, "by": alice, "subject": "Book club"}
        )
        assert added.status_code == 204, added.text
        await _chat(client, sid, gid, "Book club")
        renamed = await client.post(
            f"/simulator/sessions/{sid}/group",
            json={
                "group": gid,
                "by": alice,
                "subject": "Book club 📚",
                "description": "Fridays",
                "join": [dan],
            },
        )
        frame = await ws.wait_for(
            lambda f: f["type"] == "chat" and f["chatId"] == gid and f["group"]["subject"] == "Book club 📚"
        )
        chat = await _chat(client, sid, gid, "Book club 📚")
        left = await client.post(
            f"/simulator/sessions/{sid}/group", json={"group": gid, "by": dan, "leave": [dan]}
        )
        gone = await ws.wait_for(lambda f: f["type"] == "chat" and f["chatId"] == gid and f["group"]["left"])
        read = (await client.get(f"/sessions/{sid}/groups/{gid}")).json()

    assert renamed.status_code == left.status_code == 204
    assert (frame["name"], frame["group"]["by"], frame["group"]["joined"]) == (
        "Book club 📚",
        alice_jid,
        [dan_jid],
    )
    assert frame["group"]["description"] == "Fridays"
    assert chat["name"] == "Book club 📚"
    assert (gone["group"]["by"], gone["group"]["left"]) == (dan_jid, [dan_jid])
    assert (read["subject"], read["description"], read["owner"], read["admins"]) == (
        "Book club 📚",
        "Fridays",
        alice_jid,
        [alice_jid],
    )
    assert dan_jid not in [p["id"] for p in read["participants"]]


async def test_refusals_a_client_can_tell_apart(stack: Stack, paired: tuple[str, str]) -> None:
    user, sid = paired
    alice, _ = new_contact()
    theirs = "120363044445555666@g.us"
    async with stack.client(user) as client:
        joined = await client.post(f"/simulator/sessions/{sid}/group", json={"group": theirs, "by": alice})
        assert joined.status_code == 204, joined.text
        not_admin = await client.post(
            f"/sessions/{sid}/groups/{theirs}/participants", json={"participants": ["+15551112222"]}
        )
        no_link = await client.get(f"/sessions/{sid}/groups/{theirs}/invite-link")
        unknown = await client.get(f"/sessions/{sid}/groups/120363000000000001@g.us")
        not_a_group = await client.get(f"/sessions/{sid}/groups/+15551112222")
        empty = await client.post(
            f"/sessions/{sid}/groups", json={"subject": "", "participants": ["+15551112222"]}
        )
        nobody = await client.post(f"/sessions/{sid}/groups", json={"subject": "Solo", "participants": []})
        made = (
            await client.post(f"/sessions/{sid}/groups", json={"subject": "Mine", "participants": [alice]})
        ).json()
        stranger = await client.delete(f"/sessions/{sid}/groups/{made['id']}/participants/+15551112222")

    def code(response: httpx.Response) -> tuple[int, str]:
        return response.status_code, response.json()["error"]["code"]

    assert code(not_admin) == (403, "not_group_admin")
    assert code(no_link) == (403, "not_group_admin")
    assert code(unknown) == (404, "group_not_found")
    assert code(not_a_group) == (422, "invalid_recipient")
    assert code(empty) == (422, "invalid_request")
    assert code(nobody) == (422, "invalid_request")
    assert code(stranger) == (404, "participant_not_found")
