"""Local worker processes: what ``runner dev`` and ``runner demo`` run in the foreground."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import redis
from rich.console import Console

from runner import queueing
from runner.settings import Settings
from runner.waiting import wait_until


@dataclass
class LocalWorker:
    """A ``runner worker`` subprocess in a session of its own.

    Its own session means a Ctrl-C in the terminal reaches it only through us, once.
    """

    name: str
    popen: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stop(self, sig: int = signal.SIGTERM) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, sig)


def spawn_worker(
    name: str, queues: list[str], env: dict[str, str], log: IO[bytes] | None = None
) -> LocalWorker:
    """Start ``runner worker`` for ``queues`` under ``name``."""
    args = [sys.executable, "-m", "runner", "worker", "--name", name]
    for queue in queues:
        args += ["--queue", queue]
    popen = subprocess.Popen(
        args,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log or subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return LocalWorker(name, popen)


def wait_serving(
    rq_conn: redis.Redis, queue: str, n: int, workers: list[LocalWorker], timeout: float = 30.0
) -> None:
    """Wait until ``n`` workers serve ``queue``; RuntimeError if one exits or time runs out."""

    def serving() -> bool:
        for worker in workers:
            if worker.popen.poll() is not None:
                raise RuntimeError(f"worker {worker.name} exited with {worker.popen.returncode}")
        return queueing.workers_serving(rq_conn, queue) >= n

    wait_until(serving, timeout, 0.1, f"{n} workers to serve {queue}", error=RuntimeError)


def stop_all(workers: list[LocalWorker], grace: float) -> None:
    """SIGTERM every worker (each hands its turn off) and wait; SIGKILL stragglers."""
    for worker in workers:
        worker.stop()
    deadline = time.monotonic() + grace + 3
    for worker in workers:
        try:
            worker.popen.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            worker.stop(signal.SIGKILL)
            worker.popen.wait()


def child_env(url: str, **extra: str) -> dict[str, str]:
    """The environment for local workers: ours, pointed at ``url``."""
    env = dict(os.environ)
    env["RUNNER_REDIS_URL"] = url
    env.update(extra)
    return env


def log_dir(data_dir: Path) -> Path:
    """Where local workers' logs go."""
    path = data_dir / "logs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def dev(settings: Settings, n: int, queues: list[str], console: Console) -> int:
    """``runner dev``: the server and ``n`` workers in the foreground until Ctrl-C or SIGTERM."""
    from runner.connection import redis_url
    from runner.embedded import running_port, stop_server

    started_server = settings.redis_url is None and running_port(settings.data_dir) is None
    url = redis_url(settings)
    queues = queues or [settings.queue]
    env = child_env(url)
    logs = log_dir(settings.data_dir)
    console.print(f"server {url}; {n} worker(s) on {', '.join(queues)}; logs in {logs}")
    stop = _until_signal()
    with open(logs / "dev.log", "ab") as log:
        born = iter(range(1, 1_000_000))
        workers = [
            spawn_worker(f"dev-{os.getpid()}-{next(born)}", queues, env, log) for _ in range(n)
        ]
        console.print("running; Ctrl-C stops the workers (their turns are handed off)")
        while not stop:
            for i, worker in enumerate(workers):
                if worker.popen.poll() is not None:
                    console.print(
                        f"worker {worker.name} exited ({worker.popen.returncode}); starting another"
                    )
                    name = f"dev-{os.getpid()}-{next(born)}"
                    workers[i] = spawn_worker(name, queues, env, log)
            time.sleep(0.2)
        console.print("stopping workers…")
        stop_all(workers, settings.shutdown_grace)
    if started_server:
        stop_server(settings.data_dir)
        console.print("embedded server stopped (its data is kept)")
    return 0


class _Flag:
    """Set by SIGINT/SIGTERM/SIGHUP; the foreground loop checks it."""

    def __init__(self) -> None:
        self.set = False

    def __bool__(self) -> bool:
        return self.set


def _until_signal() -> _Flag:
    flag = _Flag()

    def handler(*_: object) -> None:
        flag.set = True

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, handler)
    return flag
