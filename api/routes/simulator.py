"""Control routes of the simulated network (only with WA_BACKEND=simulated): what a phone would do.

API key needed, no user: these stand in for the phone and the network, not for a web inbox user.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Concatenate, ParamSpec, TypeVar

from fastapi import APIRouter, Path, Response, status

from actors.calls import NetworkControls
from actors.clients.simulated import SentMessage
from api.deps import Resources
from api.errors import error_responses
from api.schemas import (
    ContactIn,
    HistoryIn,
    HistoryOut,
    IncomingIn,
    MessageOut,
    ScanIn,
    ScanOut,
    SentOut,
)
from kernel.domain import MessageType
from kernel.errors import SessionNotFound
from kernel.message_kinds import contacts_wire, content_from_json, location_wire, poll_wire
from kernel.simulated import SentAction
from kernel.wire import JSON, message_json

router = APIRouter(prefix="/simulator/sessions/{id}", tags=["simulator"])

SCAN_TIMEOUT_S = 20.0

SessionIdParam = Annotated[str, Path(alias="id")]
P = ParamSpec("P")
R = TypeVar("R")


async def network(
    res: Resources, session_id: str, control: Callable[Concatenate[NetworkControls, P], Awaitable[R]]
) -> Callable[P, Awaitable[R]]:
    """`control` (a `NetworkControls` method) on an existing session's process; SessionNotFound else."""
    if await res.owners.owner(session_id) is None:
        raise SessionNotFound()
    return res.actors.control(session_id, control, timeout_s=SCAN_TIMEOUT_S)


@router.post("/scan", response_model=ScanOut, responses=error_responses(404, 409))
async def scan(session_id: SessionIdParam, body: ScanIn, res: Resources) -> JSON:
    """The phone scans the QR showing (or enters the pairing code): the session connects."""
    jid = await (await network(res, session_id, NetworkControls.scan))(body.phone, body.display_name)
    return {"deviceJid": jid}


@router.post("/incoming", response_model=MessageOut, responses=error_responses(404, 409))
async def incoming(session_id: SessionIdParam, body: IncomingIn, res: Resources) -> JSON:
    """A message arrives from `from` (a phone number, user or group JID)."""
    media = body.media.model_dump(by_alias=True, exclude_none=True) if body.media is not None else None
    kinds: dict[str, Any] = {
        "location": body.location.model_dump() if body.location else None,
        "contacts": [c.model_dump(by_alias=True) for c in body.contacts] if body.contacts else None,
        "poll": body.poll.model_dump() if body.poll else None,
        "view_once": body.view_once,
        "quoted_id": body.quoted_id,
        "sender": body.sender,
        "subject": body.subject,
    }
    incoming = await network(res, session_id, NetworkControls.incoming)
    message = await incoming(
        from_=body.from_,
        text=body.text,
        push_name=body.push_name,
        media=media,
        **{k: v for k, v in kinds.items() if v},
    )
    return message_json(message)


@router.post("/contacts", status_code=status.HTTP_204_NO_CONTENT, responses=error_responses(404, 409, 422))
async def contact(session_id: SessionIdParam, body: ContactIn, res: Resources) -> Response:
    """What the phone knows about a contact changes: its address-book name, its push name, its picture,
    its LID (revealed with its phone number, or not yet)."""
    contact = await network(res, session_id, NetworkControls.contact)
    await contact(
        jid=body.jid,
        name=body.name,
        push_name=body.push_name,
        picture=body.picture,
        lid=body.lid,
        reveal_lid=body.reveal_lid,
        picture_ttl_s=body.picture_ttl_s,
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/history", response_model=HistoryOut, responses=error_responses(404, 409))
async def history(session_id: SessionIdParam, body: HistoryIn, res: Resources) -> JSON:
    """A history sync chunk arrives."""
    history = await network(res, session_id, NetworkControls.history)
    chunk = await history(chats=body.chats, messages_per_chat=body.messages_per_chat)
    messages = sum(len(c.messages) for c in chunk.conversations)
    return {"chats": len(chunk.conversations), "messages": messages}


@router.post("/drop", status_code=status.HTTP_204_NO_CONTENT, responses=error_responses(404, 409))
async def drop(session_id: SessionIdParam, res: Resources) -> Response:
    """A transient network drop; the session reconnects by itself."""
    await (await network(res, session_id, NetworkControls.drop))()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/unlink", status_code=status.HTTP_204_NO_CONTENT, responses=error_responses(404, 409))
async def unlink(session_id: SessionIdParam, res: Resources) -> Response:
    """The phone removes the linked device: the session becomes `disconnected` / `logged_out`."""
    await (await network(res, session_id, NetworkControls.unlink))()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/sent", response_model=list[SentOut], responses=error_responses(404))
async def sent(session_id: SessionIdParam, res: Resources) -> list[JSON]:
    """What the network received from this session, oldest first."""
    items = await (await network(res, session_id, NetworkControls.sent))()
    return [_sent_json(item) for item in items]


def _sent_json(item: SentMessage) -> JSON:
    if isinstance(item.type, SentAction):
        return _action_json(item, item.type)
    kind = MessageType(item.type)
    is_text = kind == MessageType.TEXT
    return {
        "id": item.message_id,
        "to": item.to,
        "type": kind.value,
        "mimetype": item.mimetype,
        "ptt": item.ptt,
        "size": item.size,
        "seconds": item.seconds,
        "fileName": item.file_name,
        "text": item.text if is_text else None,
        "caption": None if is_text or item.content else item.text,
        "quotedId": item.quoted_id,
        **_content_json(item),
    }


def _content_json(item: SentMessage) -> JSON:
    location, contacts, poll = content_from_json(item.content)
    return {"location": location_wire(location), "contacts": contacts_wire(contacts), "poll": poll_wire(poll)}


def _action_json(item: SentMessage, action: SentAction) -> JSON:
    is_edit, is_presence = action is SentAction.EDIT, action is SentAction.PRESENCE
    return {
        "action": action.value,
        "id": item.message_id,
        "to": item.to,
        "type": MessageType.TEXT.value if is_edit else None,
        "mimetype": None,
        "ptt": False,
        "size": None,
        "seconds": None,
        "fileName": None,
        "text": item.text if is_edit else None,
        "caption": None,
        "quotedId": None,
        "emoji": item.text if action is SentAction.REACTION else None,
        "state": item.text if is_presence else None,
    }
