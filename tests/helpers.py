"""Helpers shared by the integration and e2e tests: polling, processes, scripts."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
RUNNER = [sys.executable, "-m", "runner"]


def wait_for(
    predicate: Callable[[], T], timeout: float = 20.0, interval: float = 0.05, what: str = ""
) -> T:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


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


@dataclass
class Proc:
    """A subprocess started by a test, in its own process group, logging to a file."""

    popen: subprocess.Popen[bytes]
    log: Path
    name: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def signal(self, sig: int) -> None:
        """Signal the process itself."""
        os.kill(self.pid, sig)

    def signal_group(self, sig: int) -> None:
        """Signal its whole process group, as a terminal or ``tini -g`` would."""
        os.killpg(self.pid, sig)

    def wait(self, timeout: float = 30.0) -> int:
        return self.popen.wait(timeout=timeout)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        """Kill it and its group (teardown)."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            self.popen.wait(timeout=10)


def start(args: list[str], env: dict[str, str], log: Path, cwd: Path | None = None) -> Proc:
    """Start ``args`` in a new session (its own process group)."""
    fh = open(log, "ab")  # noqa: SIM115 - the child owns it for its lifetime
    popen = subprocess.Popen(
        args,
        env=env,
        stdout=fh,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        cwd=cwd,
    )
    fh.close()
    return Proc(popen, log)


def horse_pids(worker_pid: int) -> list[int]:
    """PIDs of the worker's child processes (RQ's work horse), from /proc."""
    children = Path(f"/proc/{worker_pid}/task/{worker_pid}/children")
    try:
        return [int(p) for p in children.read_text().split()]
    except OSError:
        return []


def wait_registered(client: Any, proc: Proc, timeout: float = 20) -> Proc:
    """Wait until a worker subprocess has registered with RQ (so it listens on its queue)."""
    wait_for(
        lambda: client.exists(f"rq:worker:{proc.name}") or not proc.alive(),
        timeout,
        what=f"worker {proc.name} to register",
    )
    assert proc.alive(), proc.output()
    return proc
