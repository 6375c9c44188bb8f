"""The simulated network: a stand-in for WhatsApp that behaves like whatsmeow (tests, demos, benchmarks).

Device credentials live in `wa_sim.device` and what sessions send in `wa_sim.sent` (PostgreSQL), so a
paired session survives restarts exactly like a real one. The network's rules:
- QR rounds rotate like whatsmeow's (first code `qr_first_s`, then `qr_next_s` each, `qr_codes` codes),
  then go silent; pairing codes are 8 characters of whatsmeow's alphabet.
- A phone number whose digits end in `0000` is not on WhatsApp (sends raise `NotOnWhatsApp`); every
  other number, and every group, exists. Sends to a number ending in `0429` are refused as too fast
  (`WhatsAppRateLimited`), to one ending in `0463` with the reach-out time lock (`WhatsAppRestricted`).
- Contacts say "Hey there! I am using WhatsApp." as their about text until told otherwise; blocking and
  unblocking are recorded in `wa_sim.sent` as `block` / `unblock` actions.
- Groups (`groups.SimulatedGroups`): kept in the process; a participant ending in `0403` only accepts
  invites; only admins add, remove and see the invite link; another member acts through `group_event`.
- Sends get a delivered receipt ~0.1 s later and a read receipt ~0.3 s later (voice notes: played ~0.5 s).
- Incoming media downloads as deterministic bytes of the declared size, starting with the mimetype's magic.
"""

from __future__ import annotations

from actors.clients.simulated.client import SimulatedClient
from actors.clients.simulated.content import PAIRING_ALPHABET, HistoryPlan
from actors.clients.simulated.kinds import not_on_whatsapp
from actors.clients.simulated.phone import Phase
from kernel.simulated import SentMessage

__all__ = ["PAIRING_ALPHABET", "HistoryPlan", "Phase", "SentMessage", "SimulatedClient", "not_on_whatsapp"]
