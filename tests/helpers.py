"""Helpers shared by the integration and e2e tests: polling, processes, scripts."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from runner.bench.procs import Proc, horse_pids, start
from runner.waiting import wait_until

__all__ = ["Proc", "horse_pids", "start"]  # moved to runner.bench.procs; tests import them here

T = TypeVar("T")
RUNNER = [sys.executable, "-m", "runner"]


def wait_for(
    predicate: Callable[[], T | None], timeout: float = 20.0, interval: float = 0.05, what: str = ""
) -> T:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    return wait_until(predicate, timeout, interval, what, error=AssertionError)


def write_script(path: Path, steps: list[dict[str, Any]]) -> Path:
    """Write a scripted-model script and return its path."""
    path.write_text(json.dumps({"steps": steps}))
    return path


def step_script(n: int, sleep: float = 0.0, tool: str = "shell") -> list[dict[str, Any]]:
    """``n`` tool steps (``echo i``) then a final answer: n + 1 assistant messages."""
    steps: list[dict[str, Any]] = [
        {"content": f"step {i}", "tool": tool, "args": {"command": f"echo out-{i}"}, "sleep": sleep}
        for i in range(n)
    ]
    steps.append({"content": "All done."})
    return steps


def wait_registered(client: Any, proc: Proc, timeout: float = 20) -> Proc:
    """Wait until a worker subprocess has registered with RQ (so it listens on its queue)."""
    wait_for(
        lambda: client.exists(f"rq:worker:{proc.name}") or not proc.alive(),
        timeout,
        what=f"worker {proc.name} to register",
    )
    assert proc.alive(), proc.output()
    return proc
