"""A call to the number, as neonize 0.5.2's own CallOffer event through its dispatcher, becomes
`CallOffered`: who to decline (whatsmeow's `From`, maybe a LID) and the caller's chat (their phone number's
when WhatsApp tells it)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import pytest

from actors.clients.neonize import NeonizeClient
from actors.ports import ClientOptions
from kernel.events import CallOffered
from tests import neonize_events as nev

UNUSED_DSN = "postgresql://nobody@127.0.0.1:1/never?sslmode=disable"
ALICE, LID = "15551230001", "123456789012345"


@pytest.fixture
async def client() -> AsyncIterator[NeonizeClient]:
    c = NeonizeClient(ClientOptions(session_id=str(uuid4()), device_jid=None, auth_dsn=UNUSED_DSN))
    try:
        yield c
    finally:
        await c.stop()


def offer(caller: Any, call_id: str, alt: Any = None) -> Any:
    proto = nev.lib().proto
    meta = proto.BasicCallMeta(
        timestamp=1_700_000_000,
        callCreator=caller,
        callCreatorAlt=alt if alt is not None else nev.no_jid(),
        callID=call_id,
    )
    getattr(meta, "from").CopyFrom(caller)
    return proto.CallOffer(basicCallMeta=meta)


async def test_a_call_names_who_to_decline_and_their_chat(client: NeonizeClient) -> None:
    nev.dispatch(client, offer(nev.jid(ALICE), "CALL-A"))
    nev.dispatch(client, offer(nev.jid(LID, "lid"), "CALL-B", alt=nev.jid(ALICE)))
    events = aiter(client.events())
    got = [await asyncio.wait_for(anext(events), 5.0) for _ in range(2)]

    at = datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    alice = f"{ALICE}@s.whatsapp.net"
    assert got == [
        CallOffered(alice, alice, "CALL-A", at),
        CallOffered(alice, f"{LID}@lid", "CALL-B", at),  # declined by the LID it came from
    ]
