"""The neonize adapter: real WhatsApp through neonize 0.5.2 (whatsmeow in Go). The only code that imports
neonize, and protobuf never leaves it. Importing this package is cheap: neonize itself is imported when
the first `NeonizeClient` is built (after `NEONIZE_BOT_TAG=off` is set).

- `client`: `NeonizeClient` (the port) and the invariants that keep the process alive.
- `events_in`: Go's callbacks queued, then converted in order (the client's `events()`).
- `convert`: protobuf → domain events (identities, timestamps, message types).
- `outgoing`: domain → the waE2E messages we send.
- `media_fetch`: incoming media fetched from WhatsApp's media servers, decrypted and verified as it streams.
- `runtime`: once-per-process concerns (lazy import, logging, Go's stdout, the one-client guard).
"""

from actors.clients.neonize.runtime import keep_unused_out

keep_unused_out()  # before `client` imports httpx: imported there, its CLI came in (+4 MiB per session)

from actors.clients.neonize.client import NeonizeClient  # noqa: E402

__all__ = ["NeonizeClient"]
