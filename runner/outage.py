"""A server that refuses writes for now is an outage, not a crash (guarantee 10).

One classification of the server errors that mean "try again later" (unreachable,
timing out, out of memory under ``noeviction``, a read-only replica, loading its data,
unable to persist) and one retry policy with back-off for the writes of a turn: the
agent's commits, the claim and the end of an attempt, and the inbox drain.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import redis
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_delay,
    wait_exponential,
)
from tenacity.stop import stop_base

# Error replies (their first word) of a server that is fine but refuses writes for now.
_REFUSING = {
    "OOM": "server out of memory",
    "READONLY": "server is a read-only replica",
    "LOADING": "server is loading its data",
    "MISCONF": "server cannot persist its data (MISCONF)",
    "MASTERDOWN": "server lost its primary",
    "NOREPLICAS": "server has too few replicas",
    "TRYAGAIN": "server asks to try again",
    "CLUSTERDOWN": "server cluster is down",
}


def is_outage(exc: BaseException) -> bool:
    """True if ``exc`` means the server is unreachable or refuses writes for now."""
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
        return True
    return isinstance(exc, redis.ResponseError) and _code(exc) in _REFUSING


def describe(exc: BaseException) -> str:
    """A plain phrase for an outage error: ``server out of memory``, ``server unreachable``."""
    if isinstance(exc, redis.ResponseError) and _code(exc) in _REFUSING:
        return _REFUSING[_code(exc)]
    if isinstance(exc, redis.BusyLoadingError):
        return _REFUSING["LOADING"]
    if isinstance(exc, redis.TimeoutError):
        return "server not answering"
    return "server unreachable"


def _code(exc: BaseException) -> str:
    # redis-py strips the code of the errors it has a class for; put it back.
    if isinstance(exc, redis.exceptions.OutOfMemoryError):
        return "OOM"
    if isinstance(exc, redis.exceptions.ReadOnlyError):
        return "READONLY"
    words = str(exc).split(maxsplit=1)
    return words[0] if words else ""


def retrying(
    budget: float,
    log: logging.Logger,
    fields: dict[str, Any],
    time_left: Callable[[], float | None] | None = None,
    wake: threading.Event | None = None,
    max_wait: float = 5.0,
    on_wait: Callable[[str], None] | None = None,
) -> Retrying:
    """A retry policy for one kind of write: back off while the server refuses.

    Retries outage errors (and only those) for up to ``budget`` seconds; then the last
    error is raised. ``time_left()`` is what is left of a stop's deadline (None while no
    stop is requested, as ``Stop.time_left``): no wait runs past it, and at 0 the policy
    gives up. ``wake`` (a stop request's event) cuts a wait short when it is set. Each
    wait is logged plainly (``server out of memory; retrying in 0.4 s``) with ``fields``
    (run, epoch, worker) as structured extras. Build it once and call it for every
    write: it is on a turn's hot path. ``on_wait`` gets the same phrase (a worker
    passes it on to followers as a progress note).
    """

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        what = describe(exc) if exc is not None else "server refuses writes"
        delay = state.upcoming_sleep
        log.warning(f"{what}; retrying in {delay:.1f} s", extra={**fields, "error": str(exc)})
        if on_wait is not None:
            on_wait(f"{what}; retrying in {delay:.1f} s")

    backoff = wait_exponential(multiplier=0.2, max=max_wait)

    def wait(state: RetryCallState) -> float:
        left = time_left() if time_left is not None else None
        step = float(backoff(state))
        return step if left is None else min(step, left)

    def sleep(seconds: float) -> None:
        if wake is not None and not wake.is_set():
            wake.wait(seconds)  # a stop request ends the wait: the deadline applies now
        else:
            time.sleep(seconds)

    stop: stop_base = stop_after_delay(budget)
    if time_left is not None:
        stop = stop | _When(lambda: time_left() == 0.0)
    return Retrying(
        retry=retry_if_exception(is_outage),
        wait=wait,
        stop=stop,
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=True,
    )


class _When(stop_base):
    """Stop retrying as soon as ``fn()`` is true."""

    def __init__(self, fn: Callable[[], bool]) -> None:
        self.fn = fn

    def __call__(self, retry_state: RetryCallState) -> bool:
        return self.fn()
