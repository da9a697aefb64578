"""The bench's private corner of the server, and how big each section is.

Everything the bench writes lives under a fresh key prefix (``bench-XXXXXXXX``) and on
queues and workers named after it, so it never touches anyone's runs; :meth:`Bench.close`
deletes all of it and stops every process the bench started.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rq.job import Job
from rq.queue import Queue
from rq.worker import Worker

from runner.connection import connect, redis_url
from runner.errors import BenchError
from runner.events import MessageEvent, Status, StatusEvent
from runner.keys import Keys, new_run_id
from runner.settings import Settings
from runner.store import RunStore

# Short lease and sweep for the bench's workers, so recovery takes seconds, not minutes.
LEASE_SECONDS = 2.0
SWEEP_SECONDS = 0.5
SHUTDOWN_GRACE = 5.0
RUNNER = [sys.executable, "-m", "runner"]


@dataclass(frozen=True)
class Plan:
    """How many samples each section takes."""

    commit_samples: int
    growth_sizes: tuple[int, ...]
    growth_window: int
    memory_every: int
    follow_samples: int
    reattach_runs: int
    xrange_runs: int
    turns: int
    workers: int
    rounds: int
    handoffs: int
    crashes: int
    # issue 17's fleet section
    fleet_seconds: float = 1.0
    sweep_queued: int = 300
    sweep_running: int = 30
    sweep_rounds: int = 2
    wait_samples: int = 30

    @classmethod
    def make(cls, quick: bool) -> Plan:
        """The full plan (a few minutes), or the quick one (well under a minute)."""
        if quick:
            return cls(
                commit_samples=300,
                growth_sizes=(10, 300, 1000),
                growth_window=50,
                memory_every=100,
                follow_samples=40,
                reattach_runs=2,
                xrange_runs=10,
                turns=20,
                workers=2,
                rounds=1,
                handoffs=1,
                crashes=1,
            )
        return cls(
            commit_samples=2000,
            growth_sizes=(10, 1000, 10_000),
            growth_window=200,
            memory_every=250,
            follow_samples=200,
            reattach_runs=5,
            xrange_runs=30,
            turns=150,
            workers=2,
            rounds=3,
            handoffs=5,
            crashes=3,
            fleet_seconds=5.0,
            sweep_queued=10_000,
            sweep_running=1000,
            sweep_rounds=5,
            wait_samples=500,
        )


class Bench:
    """Connections, names and subprocess environment for one benchmark run."""

    def __init__(self, settings: Settings, plan: Plan, progress: Callable[[str], None]) -> None:
        self.plan = plan
        self.progress = progress
        self.token = f"bench-{secrets.token_hex(4)}"
        self.url = redis_url(settings)
        self.redis = connect(settings, url=self.url)
        self.rq = connect(settings, url=self.url, decode=False)
        # Scratch on the filesystem workers restore workspaces to (the workspace root),
        # not /tmp: what creating a file costs differs from one filesystem to another.
        settings.workspace_root.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix="runner-bench-", dir=settings.workspace_root))
        self.settings = Settings(
            redis_url=self.url,
            prefix=self.token,
            workspace_root=self.tmp / "workspaces",
            lease_seconds=LEASE_SECONDS,
            sweep_seconds=SWEEP_SECONDS,
            shutdown_grace=SHUTDOWN_GRACE,
        )
        self.keys = Keys(self.token)
        self.store = RunStore(self.redis, self.keys, self.settings.retention_seconds)
        self.env = self._env()
        self.job_ids: set[str] = set()
        self.procs: list[subprocess.Popen[bytes]] = []
        self._names = 0

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "RUNNER_REDIS_URL": self.url,
                "RUNNER_PREFIX": self.token,
                "RUNNER_WORKSPACE_ROOT": str(self.settings.workspace_root),
                "RUNNER_LEASE_SECONDS": str(self.settings.lease_seconds),
                "RUNNER_SWEEP_SECONDS": str(self.settings.sweep_seconds),
                "RUNNER_SHUTDOWN_GRACE": str(self.settings.shutdown_grace),
                "PYTHONUNBUFFERED": "1",
                "NO_COLOR": "1",
                "COLUMNS": "120",
            }
        )
        return env

    def name(self, what: str) -> str:
        """A fresh queue or worker name that carries the bench's token."""
        self._names += 1
        return f"{self.token}-{what}{self._names}"

    def scratch_key(self, what: str) -> str:
        # Floor measurements need a plain key of their own; it sits under the bench's
        # prefix so cleanup finds it with the runs.
        return f"{self.keys.prefix}:bench:{what}"

    def spawn(self, args: list[str], log: str, stdout: Any = None) -> subprocess.Popen[bytes]:
        """Start ``args`` in its own session; stderr (and stdout unless given) go to ``log``."""
        with open(self.tmp / log, "ab") as fh:
            proc = subprocess.Popen(
                args,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=fh if stdout is None else stdout,
                stderr=fh,
                start_new_session=True,
            )
        self.procs.append(proc)
        return proc

    def log_tail(self, log: str, lines: int = 5) -> str:
        path = self.tmp / log
        text = path.read_text(errors="replace") if path.exists() else ""
        return " | ".join(text.strip().splitlines()[-lines:])

    def running_run(self) -> tuple[str, int]:
        """A new run created and claimed straight through the store (no queue, no worker)."""
        run_id = new_run_id()
        fields = {"queue": self.name("none"), "model": "scripted", "title": "bench"}
        first: list[StatusEvent | MessageEvent] = [
            StatusEvent(status=Status.QUEUED, reason="submitted"),
            MessageEvent(role="user", content="benchmark"),
        ]
        self.store.create(run_id, fields, first)
        epoch = self.store.claim(run_id, "bench", self.settings.lease_seconds)
        if epoch is None:
            raise BenchError(f"could not claim the bench run {run_id}")
        return run_id, epoch

    # -- cleanup ------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the bench's processes and delete every key it created."""
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        with contextlib.suppress(Exception):
            self._delete_keys()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def _delete_keys(self) -> None:
        # Every run under the bench's prefix may have an RQ job (a sweep enqueues one).
        ours = self.job_ids | set(self.redis.zrange(self.keys.runs, 0, -1))
        self._delete(self.redis.scan_iter(match=f"{self.token}:*", count=1000))
        prefix = Job.redis_job_namespace_prefix.split(":", 1)[0]
        rq_keys = (
            key
            for key in self.redis.scan_iter(match=f"{prefix}:*", count=1000)
            if self.token in key or ours.intersection(key.split(":"))
        )
        self._delete(rq_keys)
        for registry in (Queue.redis_queues_keys, Worker.redis_workers_keys):
            members = [m for m in self.redis.smembers(registry) if self.token in m]
            if members:
                self.redis.srem(registry, *members)

    def _delete(self, keys: Any) -> None:
        batch: list[str] = []
        for key in keys:
            batch.append(key)
            if len(batch) >= 500:
                self.redis.unlink(*batch)
                batch.clear()
        if batch:
            self.redis.unlink(*batch)
