"""Polling with a deadline: the one loop the CLI, the bench, ops scripts and tests share."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T | None],
    timeout: float,
    interval: float = 0.05,
    what: str = "",
    error: Callable[[str], Exception] = TimeoutError,
) -> T:
    """Call ``predicate`` every ``interval`` seconds until it returns something truthy.

    Returns that value. After ``timeout`` seconds raises ``error(message)`` (a
    ``TimeoutError`` unless the caller names its own, e.g. ``BenchError``); the message
    says what was awaited. An exception from ``predicate`` ends the wait at once.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        left = deadline - time.monotonic()
        if left <= 0:
            raise error(f"timed out after {timeout:g}s waiting for {what or predicate}")
        time.sleep(min(interval, left))
