"""WhatsApp client adapters. Only the chosen one is imported (neonize costs ~30 MB per process)."""

from __future__ import annotations

from actors.ports import ClientOptions, Stores, WhatsAppClient
from kernel.domain import Backend


def make_client(backend: str, options: ClientOptions, stores: Stores) -> WhatsAppClient:
    """A new client of the configured backend for one session."""
    if backend == Backend.SIMULATED:
        from actors.clients.simulated import SimulatedClient

        return SimulatedClient(options, stores.sim_network(options.auth_dsn, options.session_id))
    if backend == Backend.NEONIZE:
        from actors.clients.neonize import NeonizeClient

        return NeonizeClient(options)
    raise ValueError(f"unknown WA_BACKEND {backend!r}")
