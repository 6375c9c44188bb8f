"""Sessions (a user's WhatsApp numbers, pairing) and the user's own bodies."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from api.schemas.common import ApiModel, Phone, Timestamp
from kernel.domain import Reason, SessionStatus
from kernel.proxy import MAX_URL as MAX_PROXY

PROXY_DESCRIPTION = (
    "The number's proxy: `socks5://user:pass@host:port` or `http://user:pass@host:port` (credentials"
    " optional). WhatsApp and media are dialled through it from the next connect; the password is never"
    " shown again. 422 `invalid_proxy` for any other scheme, a missing host or a bad port"
)
# Checked by `kernel.proxy.parse_proxy` in the route, so that every bad URL is `invalid_proxy`.
ProxyUrl = Annotated[
    str,
    Field(
        examples=["socks5://alice:s3cret@proxy.example.com:1080"], json_schema_extra={"maxLength": MAX_PROXY}
    ),
]

# --- sessions ----------------------------------------------------------------------------------------------


class SessionOut(ApiModel):
    """A WhatsApp number of the user (the contract's `Session`)."""

    id: str
    slot: int
    status: SessionStatus
    reason: Reason | None = Field(
        description="Why the number is not connected, or (`restricted`, with `status` connected) what"
        " limits it while it is: null when connected with nothing to say. `restricted`: WhatsApp refused a"
        " message with its reach-out time lock (463), so the number may not start new chats for a while;"
        " it stays connected and can go on writing where it may, until the session connects again."
        " `phone_in_use`: the phone just scanned is linked to"
        " another number of this bridge; shown until the next pairing round starts. `proxy_unreachable`,"
        " `proxy_auth_failed`, `proxy_refused`: the number's proxy broke the dial (nothing answered, it"
        " refused the credentials, it would not connect on to WhatsApp); shown while the session retries,"
        " until a dial gets through or `PUT /sessions/{id}/proxy` sets another"
    )
    phone: str | None
    display_name: str | None
    profile_pic_url: str | None = Field(
        description="The bridge's URL of this number's own picture (the chat picture route with our own"
        " number), never WhatsApp's expiring link"
    )
    last_seen: Timestamp | None
    qr: str | None = Field(
        description="The QR payload to show while `status` is qr_ready (status route only)"
    )
    pairing_code: str | None = Field(description="The 8-character code to type on the phone, once issued")
    live: bool = Field(
        description="The session's process is up and holds the WhatsApp connection now; false while it"
        " starts, restarts, moves or waits for capacity (`status` is then as last stored)"
    )
    proxy: str | None = Field(
        None,
        description="The number's proxy without its password (`socks5://user@host:port`), or null. A broken"
        " proxy shows as `reason` proxy_unreachable, proxy_auth_failed or proxy_refused",
        examples=["socks5://alice@proxy.example.com:1080"],
    )


class CreateSessionIn(ApiModel):
    slot: int | None = Field(None, description="1..MAX_SESSIONS_PER_USER; the lowest free slot when omitted")
    pairing_phone: Phone | None = Field(
        None, description="Pair by phone-number code instead of QR: the code appears as `pairingCode`"
    )
    proxy: ProxyUrl | None = Field(None, description=PROXY_DESCRIPTION)


class ProxyIn(ApiModel):
    proxy: ProxyUrl | None = Field(description=PROXY_DESCRIPTION + "; null removes it")


class PairingCodeIn(ApiModel):
    phone: Phone


class PairingCodeOut(ApiModel):
    code: str = Field(examples=["ABCD-EFGH"])


class ReconnectOut(ApiModel):
    status: Literal["connecting"]


# --- users -------------------------------------------------------------------------------------------------


class UserOut(ApiModel):
    id: str
    whatsapp_phone: str | None


class PhoneIn(ApiModel):
    phone: Phone


class PhoneOut(ApiModel):
    phone: str = Field(examples=["+14155552671"])


class WsTokenOut(ApiModel):
    token: str
    expires_at: Timestamp
