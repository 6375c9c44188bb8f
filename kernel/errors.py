"""The domain error tree. Each class has a stable `code` and an `http_status`; `api/errors.py` renders them.

Errors cross process boundaries (Ray re-raises an actor's exception in the caller), so every class
pickles with its message and data intact.
"""

from __future__ import annotations

from typing import Any, ClassVar


class WaError(Exception):
    """Base of every error the bridge reports to a client."""

    code: ClassVar[str] = "error"
    http_status: ClassVar[int] = 500
    default_message: ClassVar[str] = "Internal error"

    def __init__(self, message: str | None = None, **data: Any) -> None:
        self.message = message or self.default_message
        self.data = data
        super().__init__(self.message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.message, self.data))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


def _rebuild(cls: type[WaError], message: str, data: dict[str, Any]) -> WaError:
    return cls(message, **data)


class BadRequest(WaError):
    code = "bad_request"
    http_status = 400
    default_message = "Bad request"


class MissingUserId(BadRequest):
    code = "missing_user_id"
    default_message = "The X-User-Id header is required"


class MaxSessionsReached(BadRequest):
    code = "max_sessions_reached"
    default_message = "This user already has the maximum number of WhatsApp numbers"


class InvalidSlot(BadRequest):
    code = "invalid_slot"
    default_message = "Slot is out of range"


class Unauthorized(WaError):
    code = "unauthorized"
    http_status = 401
    default_message = "Missing or invalid API key"


class Forbidden(WaError):
    code = "forbidden"
    http_status = 403
    default_message = "This key may not do that"


class UserMismatch(Forbidden):
    code = "user_mismatch"
    default_message = "This key belongs to another user than X-User-Id names"


class AdminOnly(Forbidden):
    code = "admin_only"
    default_message = "Only the admin key (WHATSAPP_BRIDGE_API_KEY) may do this"


class NotFound(WaError):
    code = "not_found"
    http_status = 404
    default_message = "Not found"


class SessionNotFound(NotFound):
    code = "session_not_found"
    default_message = "No such session"


class KeyNotFound(NotFound):
    code = "key_not_found"
    default_message = "No such key for this user"


class MessageNotFound(NotFound):
    code = "message_not_found"
    default_message = "No such message"


class ChatNotFound(NotFound):
    code = "chat_not_found"
    default_message = "No such chat"


class GroupNotFound(NotFound):
    code = "group_not_found"
    default_message = "No such group, or this number is not in it"


class ParticipantNotFound(NotFound):
    code = "participant_not_found"
    default_message = "They are not in this group"


class GroupsDisabled(NotFound):
    code = "groups_disabled"
    default_message = "Groups are off on this bridge (INBOX_CHATS=direct); INBOX_CHATS=all turns them on"


class PictureNotAvailable(NotFound):
    code = "picture_not_available"
    default_message = "This chat has no picture"


class MediaNotAvailable(NotFound):
    code = "media_not_available"
    default_message = "This message has no downloadable media"


class Conflict(WaError):
    code = "conflict"
    http_status = 409
    default_message = "Conflict"


class TooManyKeys(Conflict):
    code = "too_many_keys"
    default_message = "This user has as many keys as allowed; revoke one first"


class SlotTaken(Conflict):
    code = "slot_taken"
    default_message = "This slot already holds a WhatsApp number"


class PhoneAlreadyPaired(Conflict):
    code = "phone_already_paired"
    default_message = "This phone number is already paired to another session"


class SessionNotConnected(Conflict):
    code = "session_not_connected"
    default_message = "The session is not connected to WhatsApp"


class AlreadyConnected(Conflict):
    code = "already_connected"
    default_message = "The session is already connected"


class NoQrShowing(Conflict):
    code = "no_qr_showing"
    default_message = "The session is not showing a QR code"


class MediaTooLarge(WaError):
    code = "media_too_large"
    http_status = 413
    default_message = "The file is larger than the media limit"


class UnsupportedAudio(WaError):
    code = "unsupported_audio"
    http_status = 415
    default_message = "The audio could not be decoded"


class UnsupportedMedia(WaError):
    code = "unsupported_media"
    http_status = 415
    default_message = "The file type is not supported"


class InvalidInput(WaError):
    code = "invalid_request"
    http_status = 422
    default_message = "The request is not valid"


class InvalidRecipient(InvalidInput):
    code = "invalid_recipient"
    default_message = "Not a phone number or WhatsApp JID"


class InvalidPhone(InvalidInput):
    code = "invalid_phone"
    default_message = "Not a valid phone number"


class InvalidProxy(InvalidInput):
    code = "invalid_proxy"
    default_message = "Not a proxy URL this bridge can use (socks5:// or http://, a host and a port)"


class NotOnWhatsApp(InvalidInput):
    code = "not_on_whatsapp"
    default_message = "This number is not on WhatsApp"


class NotOwnMessage(InvalidInput):
    code = "not_own_message"
    default_message = "Only your own messages can be edited or deleted for everyone"


class EditWindowClosed(InvalidInput):
    code = "edit_window_closed"
    default_message = "WhatsApp accepts edits for 15 minutes after sending"


class NotEditable(InvalidInput):
    code = "not_editable"
    default_message = "Only text messages (and captions) can be edited"


class RateLimited(WaError):
    """Too many requests of a kind in a short time; retry after `retry_after` seconds."""

    code = "rate_limited"
    http_status = 429
    default_message = "Too many requests; retry shortly"

    @property
    def retry_after(self) -> int:
        return int(self.data.get("retry_after", 1))


class SendFailed(WaError):
    code = "send_failed"
    http_status = 502
    default_message = "WhatsApp did not accept the message"


class SendRateLimited(RateLimited):
    """The number's own outbound pace (SEND_PER_MINUTE, SEND_BURST) is used up: nothing was sent."""

    code = "send_rate_limited"
    default_message = "This number is sending faster than its pace allows; retry after Retry-After seconds"


class WhatsAppRateLimited(RateLimited):
    """WhatsApp refused the send as too many too fast (its `rate-overlimit`, 429); the session stays up."""

    code = "whatsapp_rate_limited"
    default_message = "WhatsApp refused the message: this number is sending too fast"

    @property
    def retry_after(self) -> int:
        return int(self.data.get("retry_after", 60))


class WhatsAppRestricted(WaError):
    """WhatsApp refused the send because the number is restricted (the 463 reach-out time lock on new
    contacts, a spam restriction); the session stays connected and can still write to known chats."""

    code = "whatsapp_restricted"
    http_status = 403
    default_message = "WhatsApp refused the message: this number is restricted from writing to new contacts"


class NotGroupAdmin(Forbidden):
    """WhatsApp refused a group change because this number is not one of the group's admins."""

    code = "not_group_admin"
    default_message = "Only the group's admins can do that"


class IdempotencyKeyReused(InvalidInput):
    code = "idempotency_key_reused"
    default_message = "This Idempotency-Key was used for another session or a different request"


class SendOutcomeUnknown(WaError):
    """A send may or may not have reached WhatsApp; retry with the same Idempotency-Key to find out."""

    code = "send_outcome_unknown"
    http_status = 504
    default_message = "The send did not finish in time; it may have been delivered"


class ClientTimeout(WaError):
    """A call into the WhatsApp client did not return within its bound."""

    code = "client_timeout"
    http_status = 504
    default_message = "WhatsApp did not answer in time"


class SessionUnavailable(WaError):
    """The owning actor is starting or restarting: the client should retry after `retry_after` seconds."""

    code = "session_unavailable"
    http_status = 503
    default_message = "The session is restarting, try again shortly"

    @property
    def retry_after(self) -> int:
        return int(self.data.get("retry_after", 2))


class LeaseLost(SessionUnavailable):
    """Another process holds the session's lease now (`actors.lease`): this one is going away."""

    default_message = "The session moved to another process, try again shortly"


class ServiceUnavailable(WaError):
    code = "service_unavailable"
    http_status = 503
    default_message = "A backing service is unavailable"


class ClientError(WaError):
    """A WhatsApp client adapter failed in a way the caller cannot fix (translated at the boundary)."""

    code = "client_error"
    http_status = 502
    default_message = "The WhatsApp client failed"
