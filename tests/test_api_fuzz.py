"""Property-based fuzzing of the OpenAPI document (schemathesis): no input gets a 5xx, and every answer
matches what the document promises (status codes, content types, response schemas).

Three passes, randomised with a seed that is printed (set `FUZZ_SEED` to replay one):
- every operation with generated ids, valid and schema-violating inputs, as a fresh user;
- every operation with a session id, on a real connected session of the calling user (its chat and
  message ids too), so the calls get past authentication and ownership to the session's actor: each
  such operation must get at least one answer that is not a front-door refusal;
- a negative-auth pass: every operation the document marks as needing the API key refuses no key and a
  wrong key with 401, and another user's request on the session with 404.
Failing examples are kept in `.hypothesis/` and replayed first on the next run. No wall-clock bound.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis.database import DirectoryBasedExampleDatabase
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.apikit import Stack, api_stack, new_user
from tests.raykit import local_ray

pytestmark = [pytest.mark.ray, pytest.mark.timeout(400)]


def not_a_server_error_but_a_busy_session(ctx: Any, response: Any, case: Any) -> bool | None:
    """Any 5xx fails, except the contract's "unavailable": a 503 with its error code and Retry-After
    (a session that did not answer within its deadline on a loaded machine, say)."""
    if response.status_code == 503 and _refusal(response) and response.headers.get("retry-after"):
        return None
    return not_a_server_error(ctx, response, case)


CHECKS = [
    not_a_server_error_but_a_busy_session,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# Operations that end the session's connection or its life: run last, once, on the live session.
DISRUPTIVE = (
    "POST /simulator/sessions/{id}/drop",
    "POST /simulator/sessions/{id}/unlink",
    "POST /sessions/{id}/reconnect",
    "DELETE /sessions/{id}",
)
# Refusals that never got past authentication, validation and ownership.
FRONT_DOOR = {"unauthorized", "missing_user_id", "session_not_found", "invalid_request"}
EXAMPLES_DB = DirectoryBasedExampleDatabase(str(Path(__file__).parent.parent / ".hypothesis" / "api-fuzz"))
SEED = int(os.environ.get("FUZZ_SEED") or random.randrange(2**32))


@pytest.fixture(scope="module")
def stack(postgres_server: str, redis_server: str) -> Iterator[Stack]:
    # Groups on (INBOX_CHATS=all): the group routes are fuzzed on a real group of the live session.
    with local_ray(), api_stack(postgres_server, redis_server, session={"inbox_chats": "all"}) as running:
        yield running


def _wait_status(client: httpx.Client, sid: str, status: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = client.get(f"/sessions/{sid}/status")
        if response.status_code == 200 and response.json()["status"] == status:
            return
        time.sleep(0.2)
    raise AssertionError(f"session {sid} not {status} within {timeout}s")


@pytest.fixture(scope="module")
def live(stack: Stack) -> dict[str, str]:
    """A connected session with history and a media message: the user and the ids to fuzz with."""
    user = new_user()
    with httpx.Client(base_url=stack.base_url, headers=stack.headers(user), timeout=60) as client:
        sid = client.post("/sessions", json={}).json()["id"]
        _wait_status(client, sid, "qr_ready")
        scanned = client.post(f"/simulator/sessions/{sid}/scan", json={"phone": "+14155550199"})
        assert scanned.status_code == 200, scanned.text
        _wait_status(client, sid, "connected")
        history = client.post(f"/simulator/sessions/{sid}/history", json={"chats": 2, "messagesPerChat": 3})
        assert history.status_code == 200, history.text
        media = {"type": "image", "mimetype": "image/jpeg", "fileName": "a.jpg", "size": 1000}
        got = client.post(
            f"/simulator/sessions/{sid}/incoming", json={"from": "+15553331111", "media": media}
        )
        assert got.status_code == 200, got.text
        group = client.post(
            f"/sessions/{sid}/groups", json={"subject": "Fuzz", "participants": ["+15553331111"]}
        )
        assert group.status_code == 201, group.text
    chat = got.json()["chatId"]
    return {
        "user": user,
        "id": sid,
        "chatId": chat,
        "contactId": chat,
        "messageId": got.json()["id"],
        "groupId": group.json()["id"],
        "participantId": chat,
    }


def _operations(stack: Stack) -> list[Any]:
    schema = schemathesis.openapi.from_url(f"{stack.base_url}/openapi.json")
    results = list(schema.get_all_operations())
    operations = [result.ok() for result in results if isinstance(result, Ok)]
    assert len(operations) == len(results) >= 20, "every operation of the document is valid"
    return operations


def _refusal(response: Any) -> str | None:
    """The error code of a JSON error answer, None for anything else."""
    if response.status_code < 400 or "json" not in response.headers.get("content-type", [""])[0]:
        return None
    try:
        code: str = response.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None
    return code


def _fuzz(
    stack: Stack,
    operation: Any,
    user: str,
    examples: int,
    mode: GenerationMode,
    seen: list[Any] | None = None,
    **fixed: Any,
) -> None:
    @seed(SEED)
    @settings(
        max_examples=examples,
        deadline=None,
        database=EXAMPLES_DB,
        phases=[Phase.reuse, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode, **fixed))
    def check(case: Any) -> None:
        # On the case itself: negative generation drops security headers passed to `call`.
        case.headers = {**(case.headers or {}), **stack.headers(user)}
        response = case.call(base_url=stack.base_url, timeout=60)
        if seen is not None:
            seen.append(response)
        case.validate_response(response, checks=CHECKS)

    try:
        check()
    except Unsatisfiable:
        # An operation without parameters or body has no schema-violating input to generate.
        if mode is not GenerationMode.NEGATIVE:
            raise


def test_fuzzing_the_openapi_finds_no_server_error(stack: Stack, live: dict[str, str]) -> None:
    print(f"fuzz seed {SEED} (FUZZ_SEED={SEED} replays it)")
    operations = _operations(stack)
    for operation in operations:
        _fuzz(stack, operation, new_user(), 4, GenerationMode.POSITIVE)
        _fuzz(stack, operation, new_user(), 2, GenerationMode.NEGATIVE)

    # On the live session: everything but what ends it, then those, once, last.
    with_id = [op for op in operations if "{id}" in op.path]
    unreached = []
    for operation in with_id:
        if operation.label in DISRUPTIVE:
            continue
        names = {p.name for p in operation.path_parameters}
        seen: list[Any] = []
        _fuzz(
            stack,
            operation,
            live["user"],
            6,
            GenerationMode.POSITIVE,
            seen,
            path_parameters={"id": live["id"]},
        )
        if names > {"id"}:
            ids = {name: live[name] for name in names}
            _fuzz(stack, operation, live["user"], 4, GenerationMode.POSITIVE, seen, path_parameters=ids)
        if all(_refusal(response) in FRONT_DOOR for response in seen):
            unreached.append((operation.label, sorted({r.status_code for r in seen})))
    assert not unreached, f"never got past the front door: {unreached}"
    for label in DISRUPTIVE:
        operation = next((op for op in with_id if op.label == label), None)
        if operation is not None:
            _fuzz(
                stack, operation, live["user"], 1, GenerationMode.POSITIVE, path_parameters={"id": live["id"]}
            )


def test_no_key_a_wrong_key_and_another_user_are_refused_everywhere(
    stack: Stack, live: dict[str, str]
) -> None:
    document = httpx.get(f"{stack.base_url}/openapi.json").json()
    keyed = {
        f"{method.upper()} {path}"
        for path, methods in document["paths"].items()
        for method, spec in methods.items()
        if spec.get("security")
    }
    assert len(keyed) >= 20
    refused: dict[str, set[int]] = {}
    for operation in _operations(stack):
        if operation.label in keyed:
            _refuse_strangers(stack, operation, live, refused)
    assert set(refused) == keyed


def _refuse_strangers(
    stack: Stack, operation: Any, live: dict[str, str], refused: dict[str, set[int]]
) -> None:
    label = operation.label
    fixed = {"id": live["id"]} if "{id}" in operation.path else {}

    @seed(SEED)
    @settings(max_examples=2, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(path_parameters=fixed))
    def check(case: Any) -> None:
        for headers in ({}, {"X-API-Key": "wrong", "X-User-Id": live["user"]}):
            case.headers = headers
            response = case.call(base_url=stack.base_url, timeout=60)
            assert response.status_code == 401, (label, response.text)
            assert response.json()["error"]["code"] == "unauthorized"
            assert stack.api_key not in response.text
            refused.setdefault(label, set()).add(response.status_code)
        if operation.path.startswith("/sessions/{id}"):
            case.headers = stack.headers(new_user())
            response = case.call(base_url=stack.base_url, timeout=60)
            assert response.status_code == 404, (label, response.text)
            assert response.json()["error"]["code"] == "session_not_found"

    check()
