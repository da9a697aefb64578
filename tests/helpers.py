"""Helpers shared by the integration and e2e tests: polling, processes, scripts."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
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


def debian_package(package: str, installed: Callable[[], bool]) -> str | None:
    """Install Debian's ``package`` unless ``installed()``; None when done, else why not.

    Tests that need a system tool (chromium, redis-server, tini, libfaketime) install it
    here, as root, which CI is. One lock serialises apt across pytest-xdist workers, and a
    failed install is retried once after ``apt-get update`` (a stale package list).
    """
    if installed():
        return None
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return f"{package} is not installed (apt-get install {package}; needs root)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    wait = ["-o", "DPkg::Lock::Timeout=600"]  # apt run by anything else: wait for its lock
    install = ["apt-get", *wait, "install", "-y", "-q", package]
    with open("/tmp/runner-tests-apt.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if installed():  # another worker installed it while this one waited
            return None
        done = _run(install, env)
        if done.returncode != 0:
            _run(["apt-get", *wait, "update", "-q"], env)
            done = _run(install, env)
    if installed():
        return None
    return f"apt-get install {package} failed: {done.stderr.strip()[-300:]}"


def _run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900, check=False)


def run_at_once(
    env: dict[str, str], commands: Sequence[Sequence[str]], timeout: float = 120
) -> list[subprocess.CompletedProcess[str]]:
    """Start ``runner`` with each argument list at once (a process each); their results."""
    procs = [
        subprocess.Popen(
            [*RUNNER, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for args in commands
    ]
    done = []
    for proc, args in zip(procs, commands, strict=True):
        out, err = proc.communicate(timeout=timeout)
        done.append(subprocess.CompletedProcess(list(args), proc.returncode, out, err))
    return done
