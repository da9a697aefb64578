"""Local worker processes: what ``runner dev`` and ``runner demo`` run in the foreground."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit, urlunsplit

import redis
from rich.console import Console

from runner import queueing
from runner.errors import UnsafeServer
from runner.settings import Settings
from runner.waiting import wait_until

PR_SET_PDEATHSIG = 1


@dataclass
class LocalWorker:
    """A ``runner worker`` subprocess in a session of its own, that dies with us.

    Its own session means a Ctrl-C in the terminal reaches it only through us, once. If
    we die without stopping it, the kernel sends it SIGTERM (it hands its turn off).
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
    parent = os.getpid()
    popen = subprocess.Popen(
        args,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log or subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=lambda: _stop_with_parent(parent),  # noqa: PLW1509 - one prctl, no locks
    )
    return LocalWorker(name, popen)


def _stop_with_parent(parent: int) -> None:
    """In the child, before exec: SIGTERM when the parent dies (Linux; kept across exec)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # it died before prctl took effect
        os._exit(1)


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
    say = _Say(console)
    _check_server(settings, url, say)  # before workers that would refuse it, one by one
    say(f"server {public_url(url)}; {n} worker(s) on {', '.join(queues)}; logs in {logs}")
    stop = _until_signal()
    with open(logs / "dev.log", "ab") as log:
        born = iter(range(1, 1_000_000))

        def respawn() -> LocalWorker:
            return spawn_worker(f"dev-{os.getpid()}-{next(born)}", queues, env, log)

        workers = [respawn() for _ in range(n)]
        try:
            say("running; Ctrl-C stops the workers (their turns are handed off)")
            _supervise(workers, stop, say, respawn)
        finally:
            # However the loop ended (a signal, or our own output gone), stop the workers.
            say("stopping workers…")
            stop_all(workers, settings.shutdown_grace)
    if started_server:
        stop_server(settings.data_dir)
        say("embedded server stopped (its data is kept)")
    return 0


def _check_server(settings: Settings, url: str, say: _Say) -> None:
    """Warn as a worker would; UnsafeServer where every worker would refuse to start."""
    from runner.connection import connect
    from runner.serverinfo import Severity, check_server

    client = connect(settings, url=url)
    try:
        for finding in check_server(client):
            if finding.severity is Severity.FATAL:
                raise UnsafeServer(finding.message)
            if finding.severity is Severity.WARN:
                say(f"warning: {finding.message}")
    finally:
        client.close()


def _supervise(
    workers: list[LocalWorker], stop: _Flag, say: _Say, respawn: Callable[[], LocalWorker]
) -> None:
    """Until a stop signal: replace each worker that exits."""
    while not stop:
        for i, worker in enumerate(workers):
            if worker.popen.poll() is not None:
                say(f"worker {worker.name} exited ({worker.popen.returncode}); starting another")
                workers[i] = respawn()
        time.sleep(0.2)


def public_url(url: str) -> str:
    """``url`` with its password hidden, for printing."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


class _Say:
    """Prints a line; once our output is gone (``dev | tee`` after Ctrl-C), prints nothing.

    A closed pipe must not stop ``dev`` before it has stopped its workers.
    """

    def __init__(self, console: Console) -> None:
        self.console = console
        self.gone = False

    def __call__(self, text: str) -> None:
        if self.gone:
            return
        try:
            self.console.print(text)
            self.console.file.flush()
        except OSError:  # BrokenPipeError, EIO from a closed terminal
            self.gone = True
            _silence_output()


def _silence_output() -> None:
    """Point stdout and stderr at /dev/null, so no later write or exit flush fails."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            os.dup2(devnull, stream.fileno())
    os.close(devnull)


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
