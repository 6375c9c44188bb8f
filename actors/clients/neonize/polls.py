"""Votes in polls on neonize. A vote arrives as a MessageEv carrying `pollUpdateMessage`: encrypted with
the poll's message secret, which whatsmeow keeps for the polls it has seen; whatsmeow's DecryptPollVote
(neonize's `decrypt_poll_vote`, an FFI call) gives the `PollVoteMessage`, whose `selectedOptions` are the
SHA-256 of the options picked. The poll is the update's `pollCreationMessageKey.ID`, the voter the
event's sender. A vote that cannot be decrypted (no secret: a poll from before this device) is logged
and dropped: it changes no tally.
"""

from __future__ import annotations

from typing import Any

from actors.clients.neonize.convert import from_ms, jid_str, phone_first
from actors.clients.neonize.inbox import _chat, _unwrap
from kernel.events import PollVoted


def poll_update(ev: Any) -> Any | None:
    """The `pollUpdateMessage` a MessageEv carries, or None."""
    if not ev.HasField("Message"):
        return None
    content = _unwrap(ev.Message)
    return content.pollUpdateMessage if content.HasField("pollUpdateMessage") else None


def vote_from(ev: Any, update: Any, decrypted: Any, own_jid: str | None) -> PollVoted | None:
    """The PollVoted of a MessageEv whose `update` whatsmeow decrypted to `decrypted`."""
    src = ev.Info.MessageSource
    chat = _chat(src)
    poll_id = str(update.pollCreationMessageKey.ID)
    if chat is None or not poll_id:
        return None
    voter, _alt = phone_first(jid_str(src.Sender) or "", jid_str(src.SenderAlt))
    if src.IsFromMe and own_jid:
        voter = own_jid
    at = from_ms(update.senderTimestampMS or ev.Info.Timestamp)
    return PollVoted(chat, poll_id, voter, tuple(bytes(o).hex() for o in decrypted.selectedOptions), at)
