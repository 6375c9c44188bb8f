"""WhatsApp's refusals of a send as whatsmeow words them, raised as neonize 0.5.2's own exception objects,
become the bridge's stable codes (tests/test_send_pace.py shows them end to end on the simulated network)."""

from __future__ import annotations

import pickle

from actors.clients.neonize.refusals import refusal
from kernel.errors import WhatsAppRateLimited, WhatsAppRestricted
from tests import neonize_events as nev


def test_whatsapps_refusals_become_stable_codes() -> None:
    exc = nev.lib().exc
    # What whatsmeow returns (send.go: fmt.Errorf("%w %d", ErrServerReturnedError, code); IQError.Error()),
    # as neonize raises it.
    reachout = refusal(str(exc.SendMessageError("server returned error 463")))
    too_fast = refusal(str(exc.SendMessageError("server returned error 429")))
    overlimit = refusal(str(exc.NeonizeError("info query returned status 429: rate-overlimit")))

    assert isinstance(reachout, WhatsAppRestricted)
    assert (reachout.http_status, reachout.code) == (403, "whatsapp_restricted")
    assert isinstance(too_fast, WhatsAppRateLimited) and isinstance(overlimit, WhatsAppRateLimited)
    assert (too_fast.http_status, too_fast.code, too_fast.retry_after) == (429, "whatsapp_rate_limited", 60)
    for other in (
        "server returned error 403",  # the recipient blocked us: a plain send failure
        "server returned error 4630",
        "info query returned status 403: forbidden",
        "websocket not connected",
    ):
        assert refusal(str(exc.SendMessageError(other))) is None, other
    restricted = pickle.loads(pickle.dumps(reachout))
    assert (type(restricted), restricted.code) == (WhatsAppRestricted, "whatsapp_restricted")
