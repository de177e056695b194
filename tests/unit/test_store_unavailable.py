"""Which exceptions say "the database or Redis cannot be reached" (a 503, one warning) rather
than a fault of the code (a 500 and its traceback): stores/unavailable.py."""

from __future__ import annotations

import asyncpg.exceptions
import pytest
import redis.exceptions
import sqlalchemy.exc

from switchboard.stores.unavailable import unavailable


class AdapterError(Exception):
    """SQLAlchemy's asyncpg adapter raises an error of its own "from" the driver's."""


def wrapped(driver: BaseException) -> sqlalchemy.exc.DBAPIError:
    try:
        try:
            raise driver
        except BaseException as exc:
            raise AdapterError(str(exc)) from exc
    except AdapterError as adapter:
        return sqlalchemy.exc.OperationalError("SELECT 1", None, adapter)


@pytest.mark.parametrize("driver", [
    asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
    asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator command"),
    asyncpg.exceptions.TooManyConnectionsError("sorry, too many clients already"),
    asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
    ConnectionRefusedError(111, "Connection refused"),
])
def test_a_database_that_cannot_take_the_connection_is_unreachable(driver: BaseException) -> None:
    assert unavailable(wrapped(driver))
    assert unavailable(driver)


def test_redis_out_of_reach_is_unreachable() -> None:
    assert unavailable(redis.exceptions.ConnectionError("Connection closed by server."))
    assert unavailable(redis.exceptions.TimeoutError("Timeout reading from socket"))


@pytest.mark.parametrize("fault", [
    wrapped(asyncpg.exceptions.UndefinedColumnError("column \"x\" does not exist")),
    wrapped(ValueError("a bug")),
    ValueError("a bug"),
    redis.exceptions.ResponseError("WRONGTYPE"),
])
def test_a_fault_of_the_code_is_not(fault: BaseException) -> None:
    assert not unavailable(fault)
