"""Chaos tooling for the tests: the soak and the transcript checker live in runner.bench.

They moved there so ``ops/soak.py`` runs without ``tests/`` on its path; the tests import
them from here as before.
"""

from __future__ import annotations

from runner.bench.checker import (
    INTERRUPTED,
    expected_tool_output,
    recovery_seconds,
    running_events,
    stream_seconds,
    transcript_problems,
)
from runner.bench.soak import Monkey, SoakResult, WorkerPool, soak, soak_script
from runner.events import StatusEvent
from runner.store import RunStore
from tests.helpers import wait_for

__all__ = [
    "INTERRUPTED",
    "Monkey",
    "SoakResult",
    "WorkerPool",
    "expected_tool_output",
    "recovery_seconds",
    "running_events",
    "soak",
    "soak_script",
    "stream_seconds",
    "transcript_problems",
    "wait_running",
]


def wait_running(store: RunStore, run_id: str, epoch: int = 0, timeout: float = 20) -> StatusEvent:
    """Wait for the first ``running`` event of an attempt after ``epoch``."""

    def found() -> StatusEvent | None:
        later = [e for e in running_events(store.events(run_id)) if e.epoch > epoch]
        return later[0] if later else None

    return wait_for(found, timeout, what=f"an attempt of {run_id} after epoch {epoch}")
