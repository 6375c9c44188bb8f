"""Property-based fuzzing of the OpenAPI document (schemathesis, bounded): no input gets a 5xx, and
every answer matches what the document promises (status codes and response schemas).

Two passes: every operation with generated ids (valid and schema-violating inputs), and the read and
send operations against a real connected session, where the calls reach its actor.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from tests.apikit import Stack, api_stack, new_user
from tests.raykit import local_ray

pytestmark = [pytest.mark.ray, pytest.mark.timeout(150)]

CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]
# Operations that change the session's life (a restart is a legitimate 503): generated ids only.
DISRUPTIVE = {"DELETE /sessions/{id}", "POST /sessions/{id}/reconnect"}
LIVE_SESSION_OPS = (
    "GET /sessions/{id}/status",
    "GET /sessions/{id}/chats",
    "GET /sessions/{id}/chats/{chatId}/messages",
    "GET /sessions/{id}/chats/{chatId}/messages/{messageId}/media",
    "POST /sessions/{id}/pairing-code",
    "POST /sessions/{id}/send/text",
    "POST /sessions/{id}/send/media",
    "POST /sessions/{id}/send/audio",
    "POST /simulator/sessions/{id}/incoming",
    "GET /simulator/sessions/{id}/sent",
)


@pytest.fixture(scope="module")
def stack(postgres_server: str, redis_server: str) -> Iterator[Stack]:
    with local_ray(), api_stack(postgres_server, redis_server) as running:
        yield running


def _wait_status(client: httpx.Client, sid: str, status: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = client.get(f"/sessions/{sid}/status")
        if response.status_code == 200 and response.json()["status"] == status:
            return
        time.sleep(0.2)
    raise AssertionError(f"session {sid} not {status} within {timeout}s")


@pytest.fixture(scope="module")
def live_session(stack: Stack) -> tuple[str, str]:
    user = new_user()
    with httpx.Client(base_url=stack.base_url, headers=stack.headers(user), timeout=30) as client:
        sid = client.post("/sessions", json={}).json()["id"]
        _wait_status(client, sid, "qr_ready")
        assert (
            client.post(f"/simulator/sessions/{sid}/scan", json={"phone": "+14155550199"}).status_code == 200
        )
        _wait_status(client, sid, "connected")
    return user, sid


def _fuzz(stack: Stack, operation: Any, user: str, examples: int, mode: GenerationMode, **fixed: Any) -> None:
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode, **fixed))
    def check(case: Any) -> None:
        # On the case itself: negative generation drops security headers passed to `call`.
        case.headers = {**(case.headers or {}), **stack.headers(user)}
        response = case.call(base_url=stack.base_url, timeout=60)
        case.validate_response(response, checks=CHECKS)

    try:
        check()
    except Unsatisfiable:
        # An operation without parameters or body has no schema-violating input to generate.
        if mode is not GenerationMode.NEGATIVE:
            raise


def test_fuzzing_the_openapi_finds_no_server_error(stack: Stack, live_session: tuple[str, str]) -> None:
    started = time.monotonic()
    user, sid = live_session
    schema = schemathesis.openapi.from_url(f"{stack.base_url}/openapi.json")
    results = list(schema.get_all_operations())
    operations = [result.ok() for result in results if isinstance(result, Ok)]
    assert len(operations) == len(results) >= 20, "every operation of the document is valid"
    for operation in operations:
        _fuzz(stack, operation, new_user(), 4, GenerationMode.POSITIVE)
        _fuzz(stack, operation, new_user(), 2, GenerationMode.NEGATIVE)
    for operation in operations:
        if operation.label in LIVE_SESSION_OPS:
            _fuzz(stack, operation, user, 5, GenerationMode.POSITIVE, path_parameters={"id": sid})
    assert DISRUPTIVE.isdisjoint(LIVE_SESSION_OPS)
    assert time.monotonic() - started < 60
