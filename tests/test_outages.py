"""`kernel.outages`: every PostgreSQL error class asyncpg knows, and what the API and the sessions make of it.

The expectations are written out here, independently of the module's own table: a change to what is
retried must change this test too.
"""

from __future__ import annotations

import inspect

import asyncpg
import asyncpg.exceptions as pg
import pytest

from api.unavailable import as_wa_error
from kernel.errors import ServiceUnavailable
from kernel.outages import Outage, Service, Why, outage, sqlstate_outage

# Retried (an outage): the codes the issue names, and the ones decided here on top (see kernel/outages.py).
TRANSIENT_CLASSES = {"08": Why.CONNECTION_LOST, "53": Why.NO_RESOURCES}
TRANSIENT_CODES = {
    "53300": Why.CANNOT_CONNECT,  # too many connections
    "57P01": Why.CONNECTION_LOST,  # admin shutdown, pg_terminate_backend
    "57P02": Why.CONNECTION_LOST,  # crash shutdown
    "57P03": Why.CANNOT_CONNECT,  # cannot connect now
    "57P05": Why.CONNECTION_LOST,  # idle session timeout
    "25P03": Why.CONNECTION_LOST,  # idle in transaction timeout
    "25P04": Why.CONNECTION_LOST,  # transaction timeout
    "25006": Why.READ_ONLY,  # read-only transaction: a standby, a demoted primary
    "40001": Why.CONFLICT,  # serialization failure
    "40P01": Why.CONFLICT,  # deadlock
    "40003": Why.CONNECTION_LOST,  # statement completion unknown
    "55P03": Why.CONFLICT,  # lock_timeout
    "57014": Why.TIMEOUT,  # statement_timeout (decided: retried like our own command timeout)
}
# Every SQLSTATE class PostgreSQL 16 defines (Appendix A), transient or not.
ALL_CLASSES = tuple(
    [
        "00",
        "01",
        "02",
        "03",
        "08",
        "09",
        "0A",
        "0B",
        "0F",
        "0L",
        "0P",
        "0Z",
        "20",
        "21",
        "22",
        "23",
        "24",
        "25",
        "26",
        "27",
        "28",
        "2B",
        "2D",
        "2F",
        "34",
        "38",
        "39",
        "3B",
        "3D",
        "3F",
        "40",
        "42",
        "44",
        "53",
        "54",
        "55",
        "57",
        "58",
        "72",
        "F0",
        "HV",
        "P0",
        "XX",
    ]
)


def expected(code: str) -> Why | None:
    return TRANSIENT_CODES.get(code) or TRANSIENT_CLASSES.get(code[:2])


def _postgres_errors() -> list[type[pg.PostgresError]]:
    found = [
        cls
        for _, cls in inspect.getmembers(pg, inspect.isclass)
        if issubclass(cls, pg.PostgresError) and isinstance(getattr(cls, "sqlstate", None), str)
    ]
    assert len(found) > 200  # asyncpg's generated classes: one per SQLSTATE
    return found


@pytest.mark.parametrize("cls", _postgres_errors(), ids=lambda cls: f"{cls.sqlstate}-{cls.__name__}")
def test_every_postgres_error_class_is_decided_by_its_sqlstate(cls: type[pg.PostgresError]) -> None:
    err = cls("message")
    found = outage(err)
    want = expected(cls.sqlstate)
    if issubclass(
        cls, asyncpg.InternalClientError
    ):  # e.g. InvalidCachedStatementError: the client lost track
        want = Why.CONNECTION_LOST
    if want is None:
        assert found is None, f"{cls.sqlstate} should be a bug, not retried"
        assert as_wa_error(err) is None  # the API lets it go on: a 500, logged
    else:
        assert found == Outage(Service.DATABASE, want, found.sqlstate if found else None)
        mapped = as_wa_error(err)  # the API answers the same: 503 + Retry-After
        assert isinstance(mapped, ServiceUnavailable) and mapped.http_status == 503


@pytest.mark.parametrize("klass", ALL_CLASSES)
def test_every_sqlstate_class_is_decided(klass: str) -> None:
    for code in (f"{klass}000", f"{klass}999"):
        found = sqlstate_outage(code)
        assert (found.why if found else None) == expected(code), code


def test_what_the_issue_names_is_retried_and_constraint_violations_are_not() -> None:
    retried = {
        "08006": Why.CONNECTION_LOST,
        "53300": Why.CANNOT_CONNECT,
        "57P01": Why.CONNECTION_LOST,
        "57P02": Why.CONNECTION_LOST,
        "57P03": Why.CANNOT_CONNECT,
        "25006": Why.READ_ONLY,
        "53100": Why.NO_RESOURCES,
        "40P01": Why.CONFLICT,
        "40001": Why.CONFLICT,
    }
    for code, why in retried.items():
        found = sqlstate_outage(code)
        assert found is not None and found.why == why, code
    assert sqlstate_outage("25006").refuses_writes and sqlstate_outage("53100").refuses_writes  # type: ignore[union-attr]
    assert not sqlstate_outage("08006").refuses_writes  # type: ignore[union-attr]
    for bug in ("23505", "23503", "23514", "23502", "42P01", "42601", "42703", "22001", "22021", "28P01"):
        assert sqlstate_outage(bug) is None, bug


@pytest.mark.parametrize(
    ("err", "service"),
    [
        (ConnectionRefusedError(111, "Connection refused"), Service.NETWORK),
        (OSError("Multiple exceptions: [Errno 111] Connect call failed"), Service.NETWORK),
        (TimeoutError(), Service.NETWORK),
        (pg.InternalClientError("unexpected state"), Service.DATABASE),
        (
            pg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
            Service.DATABASE,
        ),
    ],
    ids=lambda v: type(v).__name__,
)
def test_client_side_losses_and_timeouts_are_outages(err: BaseException, service: Service) -> None:
    found = outage(err)
    assert found is not None and found.service == service


@pytest.mark.parametrize(
    "err",
    [
        pg.InterfaceError("cannot perform operation: another operation is in progress"),
        FileNotFoundError(2, "No such file"),
        PermissionError(13, "Permission denied"),
        ValueError("bug"),
    ],
    ids=lambda v: type(v).__name__,
)
def test_misuse_and_local_errors_are_not_outages(err: BaseException) -> None:
    assert outage(err) is None


def test_the_first_decided_link_of_a_cause_chain_wins() -> None:
    try:
        try:
            raise pg.ReadOnlySQLTransactionError("cannot execute INSERT in a read-only transaction")
        except pg.PostgresError as inner:
            raise RuntimeError("store failed") from inner
    except RuntimeError as outer:
        found = outage(outer)
    assert found is not None and found.why == Why.READ_ONLY and found.sqlstate == "25006"
    violation = pg.UniqueViolationError("duplicate key")
    violation.__cause__ = ConnectionResetError(104, "reset")
    assert outage(violation) is None  # the constraint violation decides: a bug, whatever it wraps
