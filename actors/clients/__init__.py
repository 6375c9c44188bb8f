"""WhatsApp client adapters. Only the chosen one is imported (neonize costs ~30 MB per process)."""

from __future__ import annotations

from actors.domain import Backend
from actors.ports import ClientOptions, WhatsAppClient


def make_client(backend: str, options: ClientOptions) -> WhatsAppClient:
    """A new client of the configured backend for one session."""
    if backend == Backend.SIMULATED:
        from actors.clients.simulated import SimulatedClient

        return SimulatedClient(options)
    if backend == Backend.NEONIZE:
        from actors.clients.neonize import NeonizeClient

        return NeonizeClient(options)
    raise ValueError(f"unknown WA_BACKEND {backend!r}")
