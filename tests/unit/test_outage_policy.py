"""The outage classification and retry policy on their own."""

from __future__ import annotations

import logging
import threading
import time

import pytest
import redis

from runner import outage

LOG = logging.getLogger("test.outage")

REFUSING = [
    (redis.exceptions.OutOfMemoryError("command not allowed"), "server out of memory"),
    (redis.exceptions.ReadOnlyError("You can't write against a replica"), "read-only replica"),
    (redis.exceptions.BusyLoadingError("loading"), "loading its data"),
    (redis.ResponseError("MISCONF Errors writing to the AOF file"), "cannot persist"),
    (redis.ConnectionError("Connection refused"), "server unreachable"),
    (redis.TimeoutError("Timeout reading"), "not answering"),
]


@pytest.mark.parametrize(("exc", "phrase"), REFUSING, ids=lambda v: type(v).__name__)
def test_refusing_errors_are_outages(exc: Exception, phrase: str) -> None:
    assert outage.is_outage(exc)
    assert phrase in outage.describe(exc)


@pytest.mark.parametrize(
    "exc",
    [
        redis.ResponseError("WRONGTYPE Operation against a key holding the wrong kind"),
        redis.ResponseError("STALE epoch 3 no longer owns the run"),
        ValueError("not redis"),
    ],
)
def test_other_errors_are_not(exc: Exception) -> None:
    assert not outage.is_outage(exc)


def flaky(failures: list[Exception]) -> tuple[list[int], object]:
    calls: list[int] = []

    def call() -> str:
        calls.append(1)
        if failures:
            raise failures.pop(0)
        return "ok"

    return calls, call


def test_retries_an_outage_until_the_server_takes_the_write(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls, call = flaky([redis.exceptions.OutOfMemoryError("full")] * 2)
    policy = outage.retrying(5, LOG, {"run": "r1", "epoch": 2}, max_wait=0.01)
    with caplog.at_level(logging.WARNING, LOG.name):
        assert policy(call) == "ok"
    assert len(calls) == 3
    assert "server out of memory; retrying in" in caplog.records[0].getMessage()
    assert (caplog.records[0].run, caplog.records[0].epoch) == ("r1", 2)  # type: ignore[attr-defined]


def test_never_retries_other_errors() -> None:
    calls, call = flaky([redis.ResponseError("WRONGTYPE no")])
    with pytest.raises(redis.ResponseError):
        outage.retrying(5, LOG, {})(call)
    assert len(calls) == 1


def test_gives_up_when_the_budget_is_spent() -> None:
    calls, call = flaky([redis.ConnectionError("down")] * 1000)
    with pytest.raises(redis.ConnectionError):
        outage.retrying(0.05, LOG, {}, max_wait=0.01)(call)
    assert 1 < len(calls) < 1000


def test_gives_up_at_a_stops_deadline_and_wakes_on_the_request() -> None:
    """A wait never runs past the deadline; a stop request cuts a long wait short."""
    _, call = flaky([redis.exceptions.OutOfMemoryError("full")] * 1000)
    requested = threading.Event()
    deadline: list[float] = []

    def time_left() -> float | None:
        return None if not deadline else max(deadline[0] - time.monotonic(), 0.0)

    def stop_soon() -> None:
        deadline.append(time.monotonic() + 0.2)
        requested.set()

    threading.Timer(0.1, stop_soon).start()
    started = time.monotonic()
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        outage.retrying(60, LOG, {}, time_left, requested, max_wait=30)(call)
    assert time.monotonic() - started < 5  # not the 30 s back-off
