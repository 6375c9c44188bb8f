"""WhatsApp's refusals of a send, as whatsmeow words them, translated to the bridge's stable errors.

whatsmeow reports a message WhatsApp refused in its ack as `fmt.Errorf("%w %d", ErrServerReturnedError,
code)`: "server returned error 463". An info query refused is an `IQError`: "info query returned status
429: rate-overlimit". neonize raises both as `SendMessageError` (or another `NeonizeError`) with that
text. The codes the bridge names:
- 429 (`rate-overlimit`): this number sends too fast → `WhatsAppRateLimited` (429, Retry-After 60);
- 463 (the reach-out time lock: the number may not start new chats for a while, what WhatsApp does to
  numbers it sees spamming, or after sends to numbers that are not on WhatsApp) → `WhatsAppRestricted`
  (403). Both leave the connection as it was.
Anything else stays a `SendFailed` (502).
"""

from __future__ import annotations

import re

from kernel.errors import WaError, WhatsAppRateLimited, WhatsAppRestricted

_ACK = re.compile(r"server returned error (\d+)\s*$")
_IQ = re.compile(r"info query returned status (\d+): ([\w-]+)")
RATE_LIMITED_CODES = frozenset({429})
RESTRICTED_CODES = frozenset({463})


def refusal(text: str) -> WaError | None:
    """The stable error for whatsmeow's refusal `text`, or None when it is not one the bridge names."""
    text = text.strip()
    code: int | None = None
    if match := _ACK.search(text):
        code = int(match[1])
    elif match := _IQ.search(text):
        code = int(match[1])
        if match[2] == "rate-overlimit":
            code = 429
    if code in RATE_LIMITED_CODES:
        return WhatsAppRateLimited(retry_after=60)
    if code in RESTRICTED_CODES:
        return WhatsAppRestricted(reason="reachout_timelock")
    return None
