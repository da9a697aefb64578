"""Processes the bench, the soak and the tests start and watch; their memory."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

from rq.worker import Worker

from runner import waiting
from runner.bench.context import RUNNER, Bench
from runner.errors import BenchError

T = TypeVar("T")


def wait_until(predicate: Callable[[], T | None], timeout: float, what: str) -> T:
    """Poll ``predicate`` until it returns something truthy; BenchError after ``timeout``."""
    return waiting.wait_until(predicate, timeout, interval=0.01, what=what, error=BenchError)


@dataclass
class WorkerProc:
    """A ``runner worker`` subprocess the bench started."""

    name: str
    popen: subprocess.Popen[bytes]
    log: str

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None


def spawn_worker(b: Bench, queue_name: str, burst: bool = False) -> WorkerProc:
    """Start ``runner worker`` on ``queue_name`` (``--burst``: quit when it is empty)."""
    name = b.name("w")
    args = [*RUNNER, "worker", "--queue", queue_name, "--name", name]
    popen = b.spawn([*args, "--burst"] if burst else args, f"{name}.log")
    return WorkerProc(name, popen, f"{name}.log")


def wait_registered(b: Bench, workers: list[WorkerProc], timeout: float = 30) -> None:
    """Wait until every worker has registered with RQ (it is listening)."""
    prefix = Worker.redis_worker_namespace_prefix
    for w in workers:

        def ready(w: WorkerProc = w) -> bool:
            if not w.alive():
                raise BenchError(f"worker {w.name} exited: {b.log_tail(w.log)}")
            return bool(b.redis.exists(prefix + w.name))

        wait_until(ready, timeout, f"worker {w.name} to start")


def wait_proc(b: Bench, popen: subprocess.Popen[bytes], timeout: float, log: str) -> int:
    """Wait for a process to exit; BenchError (with its log) if it does not."""
    try:
        return popen.wait(timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"{popen.args!r} did not exit: {b.log_tail(log)}") from exc


def wait_exit(b: Bench, w: WorkerProc, timeout: float) -> int:
    """Wait for a worker to exit; BenchError (with its log) if it does not."""
    return wait_proc(b, w.popen, timeout, w.log)


def stop_worker(b: Bench, w: WorkerProc) -> None:
    """SIGTERM (a handoff), then SIGKILL of its group if it outstays its grace."""
    if not w.alive():
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(w.pid, signal.SIGTERM)
    try:
        w.popen.wait(timeout=b.settings.shutdown_grace + 5)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(w.pid, signal.SIGKILL)
        w.popen.wait(timeout=10)


def children(pid: int) -> list[int]:
    """Child PIDs of ``pid`` (a worker's work horse), from /proc."""
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def rss(pid: int) -> int:
    """Resident set size of ``pid`` in bytes (VmRSS), 0 if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class LineReader:
    """Reads a pipe in a thread and stamps each line with ``perf_counter`` on receipt."""

    def __init__(self, pipe: IO[bytes]) -> None:
        self._lines: queue.Queue[tuple[float, bytes]] = queue.Queue()
        self._pipe = pipe
        threading.Thread(target=self._run, name="bench-reader", daemon=True).start()

    def _run(self) -> None:
        for line in iter(self._pipe.readline, b""):
            self._lines.put((time.perf_counter(), line))
        self._lines.put((time.perf_counter(), b""))

    def next(self, timeout: float = 30) -> tuple[float, bytes]:
        """The next line and when it arrived; BenchError on timeout or end of output."""
        try:
            stamp, line = self._lines.get(timeout=timeout)
        except queue.Empty as exc:
            raise BenchError(f"no output within {timeout:.0f}s") from exc
        if not line:
            raise BenchError("the process ended its output early")
        return stamp, line


# --------------------------------------------------- processes of the soak and the tests


@dataclass
class Proc:
    """A subprocess the soak or a test started, in its own process group, logging to a file."""

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


horse_pids = children  # a worker's children are its work horse
