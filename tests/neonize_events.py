"""Real neonize event protobufs, and delivery through neonize's own dispatcher (`Event.execute`).

`dispatch()` does what Go's callback does: serialise the event, hand neonize the buffer's address, size
and event code. neonize parses it and schedules the adapter's handler on the bound event loop, exactly as
for a live event. Everything here goes through the adapter's loader, so `NEONIZE_BOT_TAG` is set and the
import's logging side effect is undone before neonize is imported.
"""

from __future__ import annotations

import ctypes
from typing import Any

from actors.clients.neonize import NeonizeClient, runtime

USER = "s.whatsapp.net"


def lib() -> runtime.Lib:
    return runtime.load()


def jid(user: str, server: str = USER, device: int = 0) -> Any:
    return lib().proto.JID(User=user, Server=server, Device=device, RawAgent=0, Integrator=0, IsEmpty=False)


def no_jid() -> Any:
    """An empty JID as Go encodes one (e.g. a SenderAlt whatsmeow did not know)."""
    return lib().proto.JID(User="", Server="", Device=0, RawAgent=0, Integrator=0, IsEmpty=True)


def wa(**fields: Any) -> Any:
    """A waE2E Message, e.g. `wa(conversation="hi")`."""
    return lib().e2e.Message(**fields)


def image(caption: str, *, quoted_id: str | None = None, participant: str = "") -> Any:
    e2e = lib().e2e
    context = e2e.ContextInfo(stanzaID=quoted_id, participant=participant) if quoted_id else None
    return wa(
        imageMessage=e2e.ImageMessage(
            URL="https://mmg.whatsapp.net/o1/v/t62.7118-24/f1/m232/abc",
            directPath="/o1/v/t62.7118-24/f1/m232/abc",
            mimetype="image/jpeg",
            caption=caption,
            fileLength=48213,
            height=640,
            width=480,
            mediaKey=b"k" * 32,
            fileSHA256=b"s" * 32,
            fileEncSHA256=b"e" * 32,
            contextInfo=context,
        )
    )


def message_event(
    content: Any,
    *,
    chat: Any,
    sender: Any,
    id: str,
    timestamp_ms: int,
    pushname: str = "",
    from_me: bool = False,
    group: bool = False,
    sender_alt: Any = None,
    recipient_alt: Any = None,
) -> Any:
    proto = lib().proto
    source = proto.MessageSource(
        Chat=chat,
        Sender=sender,
        IsFromMe=from_me,
        IsGroup=group,
        SenderAlt=sender_alt if sender_alt is not None else no_jid(),
        RecipientAlt=recipient_alt if recipient_alt is not None else no_jid(),
        BroadcastListOwner=no_jid(),
    )
    info = proto.MessageInfo(
        MessageSource=source, ID=id, Pushname=pushname, Timestamp=timestamp_ms, Type="text"
    )
    return proto.Message(Info=info, Message=content)


def web_message(
    content: Any,
    *,
    chat: str,
    id: str,
    timestamp_s: int,
    from_me: bool = False,
    participant: str = "",
    **kw: Any,
) -> Any:
    """A history-sync WebMessageInfo (timestamps in seconds)."""
    from neonize.proto.waCommon.WACommon_pb2 import MessageKey
    from neonize.proto.waWeb.WAWebProtobufsWeb_pb2 import WebMessageInfo

    key = MessageKey(remoteJID=chat, fromMe=from_me, ID=id, participant=participant or None)
    return WebMessageInfo(key=key, message=content, messageTimestamp=timestamp_s, **kw)


def history_sync(
    conversations: list[dict[str, Any]], *, pushnames: dict[str, str], lids: dict[str, str]
) -> Any:
    """A HistorySyncEv; each conversation dict holds Conversation fields plus `messages` (WebMessageInfo)."""
    from neonize.proto.waHistorySync import WAWebProtobufsHistorySync_pb2 as hs

    convs = []
    for spec in conversations:
        fields = dict(spec)
        messages = [hs.HistorySyncMsg(message=m, msgOrderID=i) for i, m in enumerate(fields.pop("messages"))]
        convs.append(hs.Conversation(messages=messages, **fields))
    data = hs.HistorySync(
        syncType=hs.HistorySync.INITIAL_BOOTSTRAP,
        conversations=convs,
        pushnames=[hs.Pushname(ID=k, pushname=v) for k, v in pushnames.items()],
        phoneNumberToLidMappings=[hs.PhoneNumberToLIDMapping(lidJID=k, pnJID=v) for k, v in lids.items()],
    )
    return lib().proto.HistorySync(Data=data)


def receipt(
    kind: str,
    *,
    chat: Any,
    sender: Any,
    ids: list[str],
    timestamp_s: int,
    group: bool = False,
    from_me: bool = False,
) -> Any:
    proto = lib().proto
    source = proto.MessageSource(
        Chat=chat,
        Sender=sender,
        IsFromMe=from_me,
        IsGroup=group,
        SenderAlt=no_jid(),
        RecipientAlt=no_jid(),
        BroadcastListOwner=no_jid(),
    )
    return proto.Receipt(
        MessageSource=source,
        MessageIDs=ids,
        Timestamp=timestamp_s,
        Type=proto.Receipt.ReceiptType.Value(kind),
    )


def chat_presence(chat: Any, state: str, media: str = "TEXT", *, sender_alt: Any = None) -> Any:
    """A ChatPresenceEv: `state` COMPOSING or PAUSED, `media` TEXT or AUDIO (recording a voice note)."""
    proto = lib().proto
    source = proto.MessageSource(
        Chat=chat,
        Sender=chat,
        IsFromMe=False,
        IsGroup=False,
        SenderAlt=sender_alt if sender_alt is not None else no_jid(),
        RecipientAlt=no_jid(),
        BroadcastListOwner=no_jid(),
    )
    return proto.ChatPresence(
        MessageSource=source,
        State=proto.ChatPresence.ChatPresence.Value(state),
        Media=proto.ChatPresence.ChatPresenceMedia.Value(media),
    )


def presence(who: Any, *, unavailable: bool, last_seen_s: int = 0) -> Any:
    """A PresenceEv: a contact came online, or went offline (last seen, when they share it)."""
    return lib().proto.Presence(From=who, Unavailable=unavailable, LastSeen=last_seen_s)


def pair_success(user: str, device: int) -> Any:
    proto = lib().proto
    return proto.PairStatus(
        ID=jid(user, device=device), BusinessName="", Platform="android", Status=proto.PairStatus.SUCCESS
    )


def logged_out(reason: str) -> Any:
    proto = lib().proto
    return proto.LoggedOut(OnConnect=False, Reason=proto.ConnectFailureReason.Value(reason))


def connected() -> Any:
    return lib().proto.Connected(status=True)


def disconnected() -> Any:
    return lib().proto.Disconnected(status=True)


def temporary_ban(expire_s: int) -> Any:
    proto = lib().proto
    return proto.TemporaryBan(Code=proto.TemporaryBan.SEND_TO_TOO_MANY_PEOPLE, Expire=expire_s)


def stream_replaced() -> Any:
    return lib().proto.StreamReplaced()


def dispatch(client: NeonizeClient, event: Any) -> None:
    """Deliver `event` the way Go does: neonize's dispatcher parses the bytes and calls the handler."""
    code = lib().events.EVENT_TO_INT[type(event)]
    data = event.SerializePartialToString()  # proto2 with required fields
    buf = ctypes.create_string_buffer(data, len(data))
    client.native.event.execute(0, ctypes.addressof(buf), len(data), code)


def push_qr(client: NeonizeClient, code: bytes) -> None:
    """Deliver a QR code through neonize's own QR callback (what Go calls with a C string)."""
    buf = ctypes.create_string_buffer(code)
    client.native._NewAClient__onQr(0, ctypes.addressof(buf))
