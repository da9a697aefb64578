"""runner.waiting.wait_until: the one poll-with-deadline loop."""

from __future__ import annotations

import itertools
import time

import pytest

from runner.errors import BenchError
from runner.waiting import wait_until


def test_returns_the_first_truthy_value() -> None:
    calls = itertools.count()
    assert wait_until(lambda: next(calls) >= 3 and "ready", 5, interval=0.001) == "ready"


def test_times_out_with_the_callers_error_naming_what_it_waited_for() -> None:
    began = time.monotonic()
    with pytest.raises(BenchError, match=r"timed out after 0.2s waiting for the moon"):
        wait_until(lambda: None, 0.2, interval=0.05, what="the moon", error=BenchError)
    assert 0.2 <= time.monotonic() - began < 1.0


def test_default_error_is_timeout_error() -> None:
    with pytest.raises(TimeoutError):
        wait_until(lambda: False, 0.01, interval=0.001)


def test_an_error_in_the_predicate_ends_the_wait_at_once() -> None:
    def broken() -> bool:
        raise RuntimeError("worker exited")

    with pytest.raises(RuntimeError, match="worker exited"):
        wait_until(broken, 5)
