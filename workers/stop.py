"""The stop request a turn checks at its safe points.

Signal handlers only call :meth:`Stop.request`; the agent loop, the model call and the
running tool notice it at their next safe point (STYLE 7).
"""

from __future__ import annotations

import threading
import time

_RANK = {"handoff": 1, "cancel": 2, "fenced": 3}


class Stop:
    """A stop request with a deadline for whatever is in flight.

    ``reason`` is ``handoff`` (the worker was told to stop), ``cancel`` (a user cancelled
    the run) or ``fenced`` (another attempt owns the run now). ``deadline`` is the
    ``time.monotonic()`` by which an in-flight tool must have ended; ``hurry`` is set by a
    second request and means "end it now".
    """

    def __init__(self, grace: float) -> None:
        self.grace = grace
        self.requested = threading.Event()
        self.hurry = threading.Event()
        self.reason: str | None = None
        self.deadline: float | None = None

    def request(self, reason: str = "handoff") -> None:
        """Ask the turn to stop; a second call makes it hurry. Safe in a signal handler.

        A stronger reason replaces a weaker one (fenced > cancel > handoff): a run
        cancelled during a handoff ends cancelled, not back in its queue.
        """
        if self.requested.is_set():
            if _RANK.get(reason, 0) > _RANK.get(self.reason or "", 0):
                self.reason = reason
            self.hurry.set()
            return
        self.reason = reason
        # Keep a margin under the grace so the commit and the requeue fit inside it.
        margin = min(1.5, self.grace / 4)
        self.deadline = time.monotonic() + max(self.grace - margin, 0.0)
        if reason != "handoff":
            self.hurry.set()
        self.requested.set()

    def __bool__(self) -> bool:
        return self.requested.is_set()

    def time_left(self) -> float | None:
        """Seconds an in-flight tool may still run, or None when no stop was requested."""
        if not self.requested.is_set() or self.deadline is None:
            return None
        if self.hurry.is_set():
            return 0.0
        return max(self.deadline - time.monotonic(), 0.0)

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True if a stop was requested meanwhile."""
        return self.requested.wait(seconds)
