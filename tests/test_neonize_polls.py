"""Votes in polls on neonize, with real neonize 0.5.2 protobufs: a MessageEv carrying `pollUpdateMessage`
becomes `PollVoted` from what whatsmeow's DecryptPollVote gives (a `PollVoteMessage`: the SHA-256 of the
options picked); one that cannot be decrypted (here: Go is not up) is dropped, and nothing else is."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import pytest

from actors.clients.neonize import NeonizeClient, polls
from actors.ports import ClientOptions
from kernel.events import MessageReceived, PollVoted
from kernel.message_kinds import option_hash
from tests import neonize_events as nev

UNUSED_DSN = "postgresql://nobody@127.0.0.1:1/never?sslmode=disable"
ALICE, ME = "15551230001", "15559876543"
T0_MS = 1_700_000_000_000


@pytest.fixture
async def client() -> AsyncIterator[NeonizeClient]:
    c = NeonizeClient(ClientOptions(session_id=str(uuid4()), device_jid=None, auth_dsn=UNUSED_DSN))
    try:
        yield c
    finally:
        await c.stop()


def vote_event(poll_id: str) -> Any:
    e2e = nev.lib().e2e
    update = e2e.PollUpdateMessage(
        pollCreationMessageKey={"remoteJID": f"{ALICE}@s.whatsapp.net", "fromMe": True, "ID": poll_id},
        vote=e2e.PollEncValue(encPayload=b"\x01" * 32, encIV=b"\x02" * 12),
        senderTimestampMS=T0_MS + 5_000,
    )
    return nev.message_event(
        nev.wa(pollUpdateMessage=update),
        chat=nev.jid(ALICE),
        sender=nev.jid(ALICE),
        id="3EB0VOTE",
        timestamp_ms=T0_MS,
    )


def test_a_decrypted_vote_names_the_poll_the_voter_and_the_options() -> None:
    ev = vote_event("3EB0POLL")
    update = polls.poll_update(ev)
    decrypted = nev.lib().e2e.PollVoteMessage(
        selectedOptions=[hashlib.sha256(b"Sushi").digest(), hashlib.sha256(b"Salad").digest()]
    )

    got = polls.vote_from(ev, update, decrypted, f"{ME}@s.whatsapp.net")

    at = datetime(2023, 11, 14, 22, 13, 25, tzinfo=UTC)
    alice = f"{ALICE}@s.whatsapp.net"
    assert got == PollVoted(alice, "3EB0POLL", alice, (option_hash("Sushi"), option_hash("Salad")), at)


async def test_a_vote_that_cannot_be_decrypted_is_dropped_not_a_message(client: NeonizeClient) -> None:
    nev.dispatch(client, vote_event("3EB0POLL"))
    nev.dispatch(
        client,
        nev.message_event(
            nev.wa(conversation="after"),
            chat=nev.jid(ALICE),
            sender=nev.jid(ALICE),
            id="M2",
            timestamp_ms=T0_MS,
        ),
    )

    got = await asyncio.wait_for(anext(aiter(client.events())), 5.0)

    assert isinstance(got, MessageReceived) and got.message.id == "M2"
