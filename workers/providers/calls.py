"""What a streaming SDK provider needs around its request: a stop-aware thread, retries.

No SDK is imported here. A provider hands :func:`call_abandonably` the function that
makes one attempt, and :func:`retrying` the test that says which failures are worth
another; the rest (Retry-After, back-off notes to followers, ``reset`` before a retry,
abandoning the call on a stop) is the same for every provider.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar

import tenacity

from workers.providers.base import POLL_SECONDS, Interrupted, Sink
from workers.stop import Stop

T = TypeVar("T")
MAX_RETRY_AFTER = 60.0  # a server's Retry-After is honoured up to this many seconds


def retry_after(exc: BaseException | None) -> float | None:
    """The wait a server asked for (``retry-after-ms`` or ``retry-after`` seconds)."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        try:
            return min(max(float(value) * scale, 0.0), MAX_RETRY_AFTER)
        except (TypeError, ValueError):
            continue
    return None


def parse_arguments(raw: str) -> dict[str, Any]:
    """Tool-call arguments as a dict; what does not parse is kept under ``_raw``."""
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {"_raw": raw}
    return value if isinstance(value, dict) else {"_raw": raw}


def call_abandonably(
    name: str, work: Callable[[], T], stop: Stop, wrap: Callable[[Exception], Exception]
) -> T:
    """``work()`` in a daemon thread, abandoned (Interrupted) as soon as a stop is asked.

    An exception from ``work`` reaches the caller through ``wrap`` (which turns SDK
    errors into ``ModelError`` with secrets taken out).
    """
    if stop.requested.is_set():
        raise Interrupted
    future: Future[T] = Future()

    def target() -> None:
        try:
            future.set_result(work())
        except Exception as exc:
            future.set_exception(wrap(exc))
        except BaseException as exc:
            future.set_exception(exc)

    # A daemon thread: an abandoned call must not keep the worker process alive.
    threading.Thread(target=target, name=name, daemon=True).start()
    while True:
        try:
            return future.result(timeout=POLL_SECONDS)
        except FutureTimeout:
            if stop.requested.is_set():
                raise Interrupted from None


def retrying(
    transient: Callable[[BaseException], bool],
    why: Callable[[BaseException | None], str],
    stop: Stop,
    sink: Sink,
    *,
    attempts: int,
    backoff: float,
) -> tenacity.Retrying:
    """Transient failures retried with back-off (or the server's Retry-After), told.

    Each wait is a progress note (``"rate limited, retrying in 8 s"``); the sleep ends
    early on a stop, since the caller has then abandoned the call.
    """
    expo = tenacity.wait_exponential(multiplier=backoff, max=30)

    def wait(state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        asked = retry_after(exc)
        return asked if asked is not None else float(expo(state))

    def before_sleep(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        sink.note(f"{why(exc)}, retrying in {state.upcoming_sleep:.0f} s")

    def backoff_sleep(seconds: float) -> None:
        stop.wait(seconds)

    return tenacity.Retrying(
        retry=tenacity.retry_if_exception(transient),
        wait=wait,
        stop=tenacity.stop_after_attempt(attempts) | tenacity.stop_when_event_set(stop.requested),
        sleep=backoff_sleep,
        before_sleep=before_sleep,
        reraise=True,
    )


def streamed_call(
    name: str,
    attempt: Callable[[], T],
    stop: Stop,
    sink: Sink,
    *,
    transient: Callable[[BaseException], bool],
    why: Callable[[BaseException | None], str],
    wrap: Callable[[Exception], Exception],
    attempts: int,
    backoff: float,
) -> T:
    """A provider's whole call: ``attempt`` retried, restarting the stream, abandoned on a stop."""
    policy = retrying(transient, why, stop, sink, attempts=attempts, backoff=backoff)

    def work() -> T:
        result: T = policy(restarting(sink, attempt))
        return result

    return call_abandonably(name, work, stop, wrap)


def restarting(sink: Sink, attempt: Callable[[], T]) -> Callable[[], T]:
    """``attempt`` that, from its second call on, first supersedes what was streamed."""
    calls = 0

    def again() -> T:
        nonlocal calls
        if calls:
            sink.reset()
        calls += 1
        return attempt()

    return again
