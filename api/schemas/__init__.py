"""The HTTP contract's request and response bodies (camelCase on the wire, DESIGN.md).

Responses are rendered by `kernel.wire` (the one definition of the JSON shapes, shared with Redis) and
validated against these models, which also document them in the OpenAPI schema. Every name is importable
from `api.schemas`; the modules hold:
- `common`: field types and limits, `ApiModel` (the camelCase base), the error body;
- `sessions`: sessions, pairing, the user;
- `messages`: chats and messages, acting on them, WebSocket frames, sending text;
- `simulator`: the /simulator control bodies.
"""

from __future__ import annotations

from api.schemas.common import (
    MAX_ID,
    MAX_PHONE,
    PHONE_PATTERN,
    RECIPIENT_PATTERN,
    ApiModel,
    ErrorDetail,
    ErrorOut,
    Id,
    MessageText,
    Phone,
    Recipient,
    Timestamp,
)
from api.schemas.common import (
    _no_nul as _no_nul,
)
from api.schemas.messages import (
    CallFrame,
    ChatFrame,
    ChatOut,
    ChatPage,
    ChatReadOut,
    ContactCardOut,
    EditIn,
    InboxChatOut,
    InboxOut,
    InboxSearchOut,
    LocationOut,
    MediaOut,
    MessageOut,
    MessagePage,
    MessageUpdateFrame,
    PollOut,
    PresenceFrame,
    ReactionIn,
    ReactionOut,
    SendResultOut,
    SendTextIn,
    TypingIn,
)
from api.schemas.messages import (
    _emoji as _emoji,
)
from api.schemas.sessions import (
    CreateSessionIn,
    PairingCodeIn,
    PairingCodeOut,
    PhoneIn,
    PhoneOut,
    ProxyIn,
    ReconnectOut,
    SessionOut,
    UserOut,
    WsTokenOut,
)
from api.schemas.simulator import (
    ContactCardIn,
    ContactIn,
    HistoryIn,
    HistoryOut,
    IncomingIn,
    IncomingMediaIn,
    LocationIn,
    PollIn,
    ScanIn,
    ScanOut,
    SentOut,
    SimText,
)

__all__ = [
    "MAX_ID",
    "MAX_PHONE",
    "PHONE_PATTERN",
    "RECIPIENT_PATTERN",
    "ApiModel",
    "CallFrame",
    "ChatFrame",
    "ChatOut",
    "ChatPage",
    "ChatReadOut",
    "ContactCardIn",
    "ContactCardOut",
    "ContactIn",
    "CreateSessionIn",
    "EditIn",
    "ErrorDetail",
    "ErrorOut",
    "HistoryIn",
    "HistoryOut",
    "Id",
    "InboxChatOut",
    "InboxOut",
    "InboxSearchOut",
    "IncomingIn",
    "IncomingMediaIn",
    "LocationIn",
    "LocationOut",
    "MediaOut",
    "MessageOut",
    "MessagePage",
    "MessageText",
    "MessageUpdateFrame",
    "PairingCodeIn",
    "PairingCodeOut",
    "Phone",
    "PhoneIn",
    "PhoneOut",
    "PollIn",
    "PollOut",
    "PresenceFrame",
    "ProxyIn",
    "ReactionIn",
    "ReactionOut",
    "Recipient",
    "ReconnectOut",
    "ScanIn",
    "ScanOut",
    "SendResultOut",
    "SendTextIn",
    "SentOut",
    "SessionOut",
    "SimText",
    "Timestamp",
    "TypingIn",
    "UserOut",
    "WsTokenOut",
]
