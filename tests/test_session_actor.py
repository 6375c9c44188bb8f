"""A session's whole life on the simulated network: a real detached Ray actor, PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from actors.calls import NetworkControls
from actors.registry import create_session_actor, start_registry
from kernel.domain import MessageStatus, Reason, SessionStatus
from kernel.errors import NoQrShowing, PhoneAlreadyPaired, SessionNotConnected
from tests.raykit import (
    control,
    eventually,
    fetchval,
    frames,
    handle,
    insert_session,
    pair,
    pid_of,
    registry_config,
    status_of,
    stored_chats,
    stored_messages,
    wait_status,
)

pytestmark = pytest.mark.ray


async def test_full_life_of_a_session(database_url: str, redis_url: str, namespace: str) -> None:
    config = registry_config(database_url, redis_url, namespace)
    registry = start_registry(config)
    sid = await insert_session(database_url)
    async with frames(redis_url, sid) as got:
        await registry.ensure_session.remote(sid)

        # QR codes rotate on the WebSocket channel.
        await got.wait_for("qr", lambda b: True)
        await eventually(
            lambda: asyncio.sleep(0, got.of("qr")), lambda qrs: len({q["qr"] for q in qrs}) >= 3, 10
        )
        qrs = got.of("qr")
        assert all(q["qr"].startswith("2@") and q["expiresAt"].endswith("Z") for q in qrs)
        view = await status_of(sid, namespace)
        assert view.status == SessionStatus.QR_READY and view.qr == qrs[-1]["qr"]

        # A pairing code, then the phone enters it.
        actor = handle(sid, namespace)
        code = await actor.pairing_code.remote("+15551230001")
        assert len(code) == 8 and code.isalnum()
        await control(actor, NetworkControls.scan)(phone="+15551230001", display_name="Alice")
        connected = await got.wait_for("status", lambda b: b["status"] == "connected")
        assert connected["phone"] == "+15551230001" and connected["displayName"] == "Alice"
        view = await status_of(sid, namespace)
        assert (view.status, view.qr, view.pairing_code) == (SessionStatus.CONNECTED, None, None)
        assert await fetchval(
            database_url, "SELECT count(*) FROM whatsapp_session WHERE phone=$1", "+15551230001"
        )

        # The pairing-time history sync lands in the store.
        chats = await eventually(lambda: stored_chats(database_url, sid), lambda p: len(p.items) >= 2)
        assert all(c.timestamp is not None for c in chats.items)

        # An incoming message is stored and published.
        incoming = await control(actor, NetworkControls.incoming)(
            from_="+15557770001", text="hello bridge", push_name="Bob", media=None
        )
        frame = await got.wait_for("msg", lambda b: b["message"]["id"] == incoming.id)
        assert frame["chatId"] == "15557770001@s.whatsapp.net" and frame["message"]["text"] == "hello bridge"
        page = await stored_messages(database_url, sid, "15557770001@s.whatsapp.net", 10)
        assert [m.text for m in page.items] == ["hello bridge"]
        chats = await stored_chats(database_url, sid, 1)
        assert chats.items[0].id == "15557770001@s.whatsapp.net" and chats.items[0].unread_count == 1

        # A send goes out and its receipts move its status forward.
        sent = await actor.send_text.remote("+15557770001", "hi Bob", incoming.id)
        await got.wait_for(
            "msg", lambda b: b["message"]["id"] == sent.id and b["message"]["status"] == "read"
        )
        page = await stored_messages(database_url, sid, "15557770001@s.whatsapp.net", 10)
        mine = next(m for m in page.items if m.id == sent.id)
        assert mine.from_me and mine.quoted_id == incoming.id and mine.status == MessageStatus.READ
        on_network = await control(actor, NetworkControls.sent)()
        assert [(s.to, s.text) for s in on_network] == [("15557770001@s.whatsapp.net", "hi Bob")]

        # The phone unlinks the device.
        await control(actor, NetworkControls.unlink)()
        down = await got.wait_for("status", lambda b: b["status"] == "disconnected")
        assert down["reason"] == "logged_out"
        with pytest.raises(SessionNotConnected):
            await actor.send_text.remote("+15557770001", "still there?")

    # Delete purges the actor, the row, the store and the keys.
    await registry.destroy_session.remote(sid)
    with pytest.raises(ValueError, match="Failed to look up actor"):
        handle(sid, namespace)
    for table in ("whatsapp_session WHERE id", "chat WHERE session_id", "message WHERE session_id"):
        assert await fetchval(database_url, f"SELECT count(*) FROM {table} = $1::uuid", sid) == 0
    assert (
        await fetchval(database_url, "SELECT count(*) FROM wa_sim.device WHERE session_id = $1::uuid", sid)
        == 0
    )


async def test_scan_without_qr_and_phone_paired_twice(
    database_url: str, redis_url: str, namespace: str
) -> None:
    config = registry_config(database_url, redis_url, namespace)
    first, second = await insert_session(database_url, "u1"), await insert_session(database_url, "u2")
    for sid in (first, second):
        create_session_actor(config, sid)
    await pair(first, namespace, "+15551230002")
    with pytest.raises(NoQrShowing):
        await control(handle(first, namespace), NetworkControls.scan)(phone="+15551230002", display_name=None)
    await wait_status(second, namespace, SessionStatus.QR_READY)
    async with frames(redis_url, second) as got:
        with pytest.raises(PhoneAlreadyPaired):
            await control(handle(second, namespace), NetworkControls.scan)(
                phone="+15551230002", display_name=None
            )
        # The browser learns why: a status frame with the stable reason, before the new round.
        taken = await got.wait_for("status", lambda b: b["reason"] == Reason.PHONE_IN_USE, timeout=5)
        assert (taken["status"], taken["phone"]) == ("disconnected", None)
        # The second session stays unpaired and offers a fresh QR; the first keeps its phone.
        await eventually(lambda: pid_of(second, namespace), lambda p: p > 0)
        await got.wait_for("qr", lambda b: True, timeout=15)
        view = await wait_status(second, namespace, SessionStatus.QR_READY)
    assert view.phone is None and view.reason is None, "the new round clears the reason"
    assert [s for s in got.of("status") if s["status"] == "connected"] == [], "never shown as connected"
    assert (await status_of(first, namespace)).phone == "+15551230002"


async def test_unscanned_rounds_end_in_qr_timeout(database_url: str, redis_url: str, namespace: str) -> None:
    config = registry_config(database_url, redis_url, namespace)
    sid = await insert_session(database_url)
    async with frames(redis_url, sid) as got:
        create_session_actor(config, sid)
        first_pid = await eventually(lambda: pid_of(sid, namespace), lambda p: p > 0)
        down = await got.wait_for("status", lambda b: b["status"] == "disconnected", timeout=40)
    assert down["reason"] == Reason.QR_TIMEOUT
    # Two bounded rounds: the second ran in a fresh process, each showed its own codes.
    assert await pid_of(sid, namespace) != first_pid
    assert len({q["qr"] for q in got.of("qr")}) == 2 * 6
    # Asking again starts a fresh round.
    with pytest.raises(Exception, match="retry"):
        await handle(sid, namespace).restart_pairing.remote()
    await wait_status(sid, namespace, SessionStatus.QR_READY)


async def test_sigkill_restores_the_session_and_spares_the_others(
    database_url: str, redis_url: str, namespace: str
) -> None:
    config = registry_config(database_url, redis_url, namespace)
    victim, bystander = await insert_session(database_url, "u1"), await insert_session(database_url, "u2")
    for sid in (victim, bystander):
        create_session_actor(config, sid)
    await pair(victim, namespace, "+15551230003")
    await pair(bystander, namespace, "+15551230004")
    actor = handle(victim, namespace)
    msg = await control(actor, NetworkControls.incoming)(
        from_="+15557770002", text="keep me", push_name=None, media=None
    )
    await eventually(
        lambda: stored_messages(database_url, victim, "15557770002@s.whatsapp.net", 5),
        lambda p: len(p.items) == 1,
    )
    victim_pid, bystander_pid = await pid_of(victim, namespace), await pid_of(bystander, namespace)

    os.kill(victim_pid, signal.SIGKILL)

    async with frames(redis_url, victim) as got:
        view = await wait_status(victim, namespace, SessionStatus.CONNECTED)
        assert view.phone == "+15551230003"
        assert await pid_of(victim, namespace) != victim_pid
        page = await stored_messages(database_url, victim, "15557770002@s.whatsapp.net", 5)
        assert [m.id for m in page.items] == [msg.id]
        assert got.of("qr") == []  # no scan asked
    assert await pid_of(bystander, namespace) == bystander_pid
    assert (await status_of(bystander, namespace)).status == SessionStatus.CONNECTED


async def test_a_hung_reconnect_is_abandoned_for_a_fresh_process(
    database_url: str, redis_url: str, namespace: str
) -> None:
    config = registry_config(database_url, redis_url, namespace, session={"connect_timeout_s": 2.0})
    sid = await insert_session(database_url)
    create_session_actor(config, sid)
    await pair(sid, namespace, "+15551230005")
    pid = await pid_of(sid, namespace)
    await control(handle(sid, namespace), NetworkControls.drop)(hang_reconnect=True)
    await wait_status(sid, namespace, SessionStatus.CONNECTING, timeout=5)
    await eventually(lambda: pid_of(sid, namespace), lambda p: p != pid, timeout=20)
    view = await wait_status(sid, namespace, SessionStatus.CONNECTED)
    assert view.phone == "+15551230005"


async def test_a_transient_drop_reconnects_in_place(
    database_url: str, redis_url: str, namespace: str
) -> None:
    config = registry_config(database_url, redis_url, namespace)
    sid = await insert_session(database_url)
    create_session_actor(config, sid)
    await pair(sid, namespace, "+15551230006")
    pid = await pid_of(sid, namespace)
    async with frames(redis_url, sid) as got:
        await control(handle(sid, namespace), NetworkControls.drop)()
        await got.wait_for("status", lambda b: b["status"] == "connecting" and b["reason"] == "network")
        await got.wait_for("status", lambda b: b["status"] == "connected")
    assert await pid_of(sid, namespace) == pid
