"""The API calls actors only through the Protocols of `actors.calls`: each actor method a Protocol
declares exists with the same parameters and return type, and every public method of a session actor
is declared there. A renamed or changed actor method fails here (and mypy's conformance lines), not as
a 500 at the first request."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from actors.actor import SessionActor, SimulatedSessionActor, session_actor_class
from actors.calls import (
    NetworkControls,
    RegistryCalls,
    SessionCalls,
    SimulatedSessionCalls,
    control_names,
)
from actors.clients.simulated import SimulatedClient
from actors.registry import SessionRegistry


def _methods(cls: type) -> dict[str, Any]:
    """Public methods of `cls` (its bases' included) by name."""
    return {
        name: getattr(cls, name)
        for name in dir(cls)
        if not name.startswith("_") and inspect.isfunction(getattr(cls, name))
    }


def _shape(function: Any) -> tuple[list[tuple[str, Any, Any, Any]], Any]:
    """Parameters after `self` (name, kind, annotation text, default) and the return annotation."""
    sig = inspect.signature(function)
    # Ray adds `_ray_trace_ctx` to an actor class's methods once `ray.remote` has wrapped it in this process.
    params = [p for p in list(sig.parameters.values())[1:] if p.name != "_ray_trace_ctx"]
    # `self` is positional-only in a Protocol that also takes **kwargs; the others are compared as they are.
    return [(p.name, p.kind, p.annotation, p.default) for p in params], sig.return_annotation


@pytest.mark.parametrize(
    ("actor", "calls", "every_method_declared"),
    [
        (SessionActor, SessionCalls, True),
        (SimulatedSessionActor, SimulatedSessionCalls, True),
        (SessionRegistry, RegistryCalls, False),  # the registry has more: for ops, tests and itself
        (SimulatedClient, NetworkControls, False),  # the client is also the WhatsApp port
    ],
)
def test_each_declared_call_exists_with_the_same_parameters_and_return_type(
    actor: type, calls: type, every_method_declared: bool
) -> None:
    declared, defined = _methods(calls), _methods(actor)
    assert declared, "a Protocol without methods checks nothing"
    missing = sorted(set(declared) - set(defined))
    assert not missing, f"{actor.__name__} lacks {missing}"
    for name, method in declared.items():
        assert _shape(defined[name]) == _shape(method), (
            f"{actor.__name__}.{name} differs from {calls.__name__}"
        )
    if every_method_declared:
        undeclared = sorted(set(defined) - set(declared))
        assert not undeclared, (
            f"{actor.__name__}.{undeclared} not in {calls.__name__}: the API cannot call them"
        )


def test_only_the_simulated_backend_takes_the_networks_controls() -> None:
    assert not hasattr(SessionActor, "control") and not hasattr(SessionActor, "simulate")
    assert session_actor_class("neonize") is SessionActor
    assert session_actor_class("simulated") is SimulatedSessionActor
    assert control_names() == set(_methods(NetworkControls))
