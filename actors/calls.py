"""What the API calls on the actors, as Protocols: the one place a call's name and signature are written.

`SessionActor` and `SessionRegistry` each end with a conformance line (`_: type[SessionCalls] =
SessionActor`), so mypy fails when an actor method is renamed or its parameters change; the API's
facade (`api.handles.SessionActors`) calls through these Protocols' methods (`SessionCalls.send_text`),
never by a string, so mypy checks every argument and return type across the Ray boundary.
`tests/test_actor_calls.py` holds the other direction: every public actor method is declared here.

Import-light: the types are only for the checker (the API imports this without Ray or the state machine).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from datetime import datetime

    from actors.downloads import MediaStream
    from actors.fleet import ProcessInfo
    from actors.pictures import PictureState
    from actors.supervision import Pending, Replayed, Writes
    from kernel.domain import ContactInfo, Message, NumberCheck, Placement, SendResult, SessionView
    from kernel.events import (
        CallOffered,
        ChatRead,
        GroupChanged,
        HistoryChunk,
        MessageEdited,
        MessageRevoked,
        PollVoted,
        Presence,
        ReactionChanged,
    )
    from kernel.groups import GroupInfo, MemberChange, MemberOutcome
    from kernel.message_kinds import OutgoingContent
    from kernel.simulated import SentMessage


class SessionCalls(Protocol):
    """`SessionActor`: one WhatsApp number's process."""

    async def ping(self) -> Placement: ...
    async def replay_failed(self) -> int: ...
    async def status(self) -> SessionView: ...
    async def process(self) -> ProcessInfo: ...
    async def pairing_code(self, phone: str) -> str: ...
    async def restart_pairing(self) -> None: ...
    async def send_text(
        self,
        to: str,
        text: str,
        quoted_id: str | None = None,
        idempotency_key: str | None = None,
        typing_ms: int = 0,
    ) -> SendResult: ...
    async def send_media(
        self,
        to: str,
        data: bytes,
        file_name: str | None,
        mimetype: str | None,
        caption: str | None,
        idempotency_key: str | None = None,
    ) -> SendResult: ...
    async def send_voice_note(
        self, to: str, data: bytes, idempotency_key: str | None = None
    ) -> SendResult: ...
    async def send_content(
        self, to: str, content: OutgoingContent, idempotency_key: str | None = None, typing_ms: int = 0
    ) -> SendResult: ...
    async def check_numbers(self, phones: list[str]) -> list[NumberCheck]: ...
    async def contact(self, contact_id: str) -> ContactInfo: ...
    async def set_blocked(self, contact_id: str, blocked: bool) -> None: ...
    async def groups(self) -> list[GroupInfo]: ...
    async def group(self, group_id: str) -> GroupInfo: ...
    async def create_group(self, subject: str, participants: list[str]) -> GroupInfo: ...
    async def change_members(
        self, group_id: str, participants: list[str], change: MemberChange
    ) -> list[MemberOutcome]: ...
    async def invite_link(self, group_id: str, reset: bool) -> str: ...
    async def refresh_pictures(self, stored: dict[str, PictureState]) -> int: ...
    def media(self, chat_id: str, message_id: str) -> MediaStream: ...  # a Ray streaming generator
    async def mark_read(self, chat_id: str) -> None: ...
    async def read_chat(self, chat_id: str) -> tuple[str, int]: ...
    async def react(self, chat_id: str, message_id: str, emoji: str) -> Message: ...
    async def edit(self, chat_id: str, message_id: str, text: str) -> Message: ...
    async def revoke(self, chat_id: str, message_id: str) -> Message: ...
    async def typing(self, chat_id: str, state: str) -> bool: ...
    async def chat_picture(self, chat_id: str) -> tuple[bytes, str]: ...
    async def close(self, purge: bool) -> int: ...


class SimulatedSessionCalls(SessionCalls, Protocol):
    """`SimulatedSessionActor`: a session on the simulated network, which also takes the network's
    controls: `name` is a `NetworkControls` method's (`api.handles` derives it from the method)."""

    async def control(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any: ...


class NetworkControls(Protocol):
    """What the phone and the network do to a session on the simulated network (the /simulator routes):
    `SimulatedClient`'s control methods, run in the session's process."""

    async def scan(self, phone: str, display_name: str | None = None) -> str: ...
    async def incoming(
        self,
        /,
        from_: str,
        text: str | None = None,
        push_name: str | None = None,
        media: Mapping[str, Any] | None = None,
        **kind: Any,
    ) -> Message: ...
    async def contact(
        self,
        jid: str,
        name: str | None = None,
        push_name: str | None = None,
        picture: bool | None = None,
        lid: str | None = None,
        reveal_lid: bool = True,
        picture_ttl_s: float | None = None,
    ) -> None: ...
    async def history(self, chats: int, messages_per_chat: int) -> HistoryChunk: ...
    async def call(self, from_: str) -> CallOffered: ...
    async def vote(self, chat_id: str, message_id: str, options: list[str]) -> PollVoted: ...
    async def group_event(
        self,
        group: str,
        by: str,
        subject: str | None = None,
        description: str | None = None,
        join: Sequence[str] = (),
        leave: Sequence[str] = (),
        promote: Sequence[str] = (),
        demote: Sequence[str] = (),
    ) -> GroupChanged: ...
    async def drop(self, hang_reconnect: bool = False) -> None: ...
    async def unlink(self) -> None: ...
    async def sent(self) -> list[SentMessage]: ...
    async def react(
        self, chat_id: str, message_id: str, emoji: str, from_me: bool = False
    ) -> ReactionChanged: ...
    async def edit(self, chat_id: str, message_id: str, text: str) -> MessageEdited: ...
    async def revoke(self, chat_id: str, message_id: str) -> MessageRevoked: ...
    async def read(self, chat_id: str, up_to: datetime | None = None) -> ChatRead: ...
    async def presence(self, chat_id: str, state: str, last_seen: datetime | None = None) -> Presence: ...


def control_names() -> frozenset[str]:
    """The names of the network's controls: what a session on the simulated network accepts."""
    return frozenset(name for name in vars(NetworkControls) if not name.startswith("_"))


class RegistryCalls(Protocol):
    """`SessionRegistry`: what the API asks of the supervisor."""

    async def ensure_session(self, session_id: str, node_id: str | None = None) -> None: ...
    async def destroy_session(self, session_id: str) -> bool: ...
    async def where(self, session_id: str) -> Placement: ...
    async def pending(self) -> Pending: ...
    async def writes(self) -> Writes: ...
    async def replay_failed(self, session_id: str | None = None) -> list[Replayed]: ...
