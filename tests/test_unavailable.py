"""`as_wa_error` over the real exception classes of Ray, asyncpg, SQLAlchemy and redis-py."""

from __future__ import annotations

import pickle

import asyncpg.exceptions as pg
import pytest
import ray.exceptions as rx
import redis.exceptions as rd
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from api.unavailable import ActorUnreachable, as_wa_error, describe
from kernel.errors import (
    SendOutcomeUnknown,
    ServiceUnavailable,
    SessionNotConnected,
    SessionNotFound,
    SessionUnavailable,
)

SECRET = "s3cret-parameter"


def _task_error(method: str, cause: BaseException) -> rx.RayTaskError:
    """What the caller of an actor method sees when the method raised `cause`."""
    return rx.RayTaskError(method, "traceback", cause)  # type: ignore[no-untyped-call]


def _wrapped(orig: BaseException, kind: type[DBAPIError] = DBAPIError, **kw: bool) -> DBAPIError:
    """What SQLAlchemy raises around a driver error: its text holds the SQL and the parameters."""
    return kind("UPDATE app_user SET phone = $1", {"phone": SECRET}, orig, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "err",
    [
        pg.TooManyConnectionsError("sorry, too many clients already"),
        pg.CannotConnectNowError("the database system is starting up"),
        pg.AdminShutdownError("terminating connection due to administrator command"),
        pg.CrashShutdownError("crash"),
        pg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        pg.ConnectionFailureError("connection failure"),
        pg.OutOfMemoryError("out of memory"),
        pg.DiskFullError("could not extend file: No space left on device"),
        pg.ReadOnlySQLTransactionError("cannot execute INSERT in a read-only transaction"),
        pg.DeadlockDetectedError("deadlock detected"),
        pg.SerializationError("could not serialize access due to concurrent update"),
        pg.QueryCanceledError("canceling statement due to statement timeout"),
        _wrapped(pg.ReadOnlySQLTransactionError("read-only")),
        _wrapped(pg.TooManyConnectionsError("too many connections for role")),
        _wrapped(pg.CannotConnectNowError("starting up")),
        _wrapped(ValueError("any"), connection_invalidated=True),
        _wrapped(pg.PostgresError("lost"), OperationalError),
        PoolTimeout("QueuePool limit of size 5 overflow 5 reached"),
        ConnectionRefusedError(111, "Connection refused"),
        ConnectionResetError(104, "reset"),
        OSError(113, "No route to host"),
        TimeoutError(),
        rd.ConnectionError("Error 111 connecting"),
        rd.TimeoutError("Timeout reading from socket"),
        rd.BusyLoadingError("Redis is loading the dataset in memory"),
        rd.ReadOnlyError("You can't write against a read only replica."),
        ServiceUnavailable(),
    ],
    ids=lambda err: type(err).__name__,
)
def test_a_dependency_that_is_not_there_is_service_unavailable(err: BaseException) -> None:
    mapped = as_wa_error(err)
    assert isinstance(mapped, ServiceUnavailable) and mapped.http_status == 503


@pytest.mark.parametrize(
    "err",
    [
        rx.ActorDiedError(),
        rx.ActorUnavailableError("the actor is restarting", None),
        rx.RayActorError(),
        rx.GetTimeoutError("Get timed out"),
        rx.RaySystemError("gcs unreachable"),  # type: ignore[no-untyped-call]
    ],
    ids=lambda err: type(err).__name__,
)
def test_an_actor_that_cannot_be_reached_is_actor_unreachable(err: BaseException) -> None:
    mapped = as_wa_error(err)
    assert isinstance(mapped, ActorUnreachable) and mapped.retry_after > 0


@pytest.mark.parametrize(
    "err",
    [
        pg.UniqueViolationError("duplicate key"),
        pg.PostgresSyntaxError("syntax error"),
        pg.CheckViolationError("violates check constraint"),
        pg.StringDataRightTruncationError("value too long"),
        _wrapped(pg.UniqueViolationError("duplicate key"), IntegrityError),
        _wrapped(pg.PostgresSyntaxError("syntax"), ProgrammingError),
        rd.ResponseError("WRONGTYPE"),
        rd.DataError("Invalid input"),
        ValueError("bug"),
        KeyError("bug"),
        SessionNotFound(),
        SessionNotConnected(),
        _task_error("send_text", SessionNotConnected()),
        _task_error("status", ValueError("a bug in the actor")),
    ],
    ids=lambda err: type(err).__name__,
)
def test_anything_else_is_not_an_availability_problem(err: BaseException) -> None:
    assert as_wa_error(err) is None


def test_the_bridges_own_503_and_504_are_kept_even_inside_ray_and_other_errors() -> None:
    busy = SessionUnavailable(retry_after=7)
    assert as_wa_error(busy) is busy
    unknown = SendOutcomeUnknown()
    assert as_wa_error(_task_error("send_text", unknown)) is unknown
    from_actor = as_wa_error(_task_error("chats", _wrapped(pg.TooManyConnectionsError("x"))))
    assert isinstance(from_actor, ServiceUnavailable)


def test_causes_are_followed() -> None:
    def lookup() -> None:
        try:
            raise pg.CannotConnectNowError("the database system is starting up")
        except pg.PostgresError as err:
            raise RuntimeError("owner lookup failed") from err

    with pytest.raises(RuntimeError) as raised:
        lookup()
    assert isinstance(as_wa_error(raised.value), ServiceUnavailable)


def test_a_group_is_unavailable_only_when_all_of_it_is() -> None:
    assert isinstance(as_wa_error(ExceptionGroup("x", [OSError(), TimeoutError()])), ServiceUnavailable)
    assert as_wa_error(ExceptionGroup("x", [OSError(), ValueError()])) is None


def test_describe_names_the_failure_without_its_text() -> None:
    err = _wrapped(pg.TooManyConnectionsError('too many connections for role "alice"'), OperationalError)
    assert SECRET in str(err)  # what must never be logged
    text = describe(err)
    assert "53300" in text and "TooManyConnectionsError" in text
    assert SECRET not in text and "alice" not in text and "UPDATE" not in text


def test_actor_unreachable_pickles() -> None:
    err = ActorUnreachable("gone", retry_after=3)
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is ActorUnreachable and back.retry_after == 3 and back.message == "gone"
