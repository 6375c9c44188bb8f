"""Which chats the inbox holds: direct messages first, groups on request, the rest never.

Every WhatsApp address falls in one `ChatKind`. What each becomes (both adapters and the session apply it,
so no path creates a chat the API cannot open):
- direct (`…@s.whatsapp.net`, `…@lid`): always kept.
- group (`…@g.us`): kept when `INBOX_CHATS=all`, dropped with `direct` (the default).
- broadcast list (`<digits>@broadcast`): a list message reaches its recipients as a direct message, as
  on the phone: routed to the sender's direct chat. Our own list sends (from the phone) are dropped.
- status (`status@broadcast`), newsletter (`@newsletter`), Meta AI (`@bot`), and system addresses
  (`0@s.whatsapp.net`, `server@s.whatsapp.net`, WhatsApp's own notices): dropped.
"""

from __future__ import annotations

from enum import StrEnum

from kernel.ids import GROUP_SERVER, LID_SERVER, USER_SERVER


class ChatKind(StrEnum):
    DIRECT = "direct"
    GROUP = "group"
    BROADCAST_LIST = "broadcast_list"
    STATUS = "status"
    NEWSLETTER = "newsletter"
    BOT = "bot"
    SYSTEM = "system"


class InboxChats(StrEnum):
    """The `INBOX_CHATS` setting."""

    DIRECT = "direct"
    ALL = "all"


STATUS_JID = "status@broadcast"
_SYSTEM_USERS = frozenset({"0", "server", ""})


def chat_kind(jid: str) -> ChatKind:
    user, _, server = jid.partition("@")
    user = user.partition(":")[0]
    if server == GROUP_SERVER:
        return ChatKind.GROUP
    if server == "broadcast":
        return ChatKind.STATUS if user == "status" else ChatKind.BROADCAST_LIST
    if server == "newsletter":
        return ChatKind.NEWSLETTER
    if server == "bot":
        return ChatKind.BOT
    if server in (USER_SERVER, LID_SERVER) and user.isdigit() and user not in _SYSTEM_USERS:
        return ChatKind.DIRECT
    return ChatKind.SYSTEM


def keeps(jid: str, inbox: InboxChats | str) -> bool:
    """Whether a chat with this id belongs in the inbox under the `INBOX_CHATS` setting."""
    kind = chat_kind(jid)
    return kind is ChatKind.DIRECT or (kind is ChatKind.GROUP and InboxChats(inbox) is InboxChats.ALL)
