"""The RQ worker that runs turns: RQ's forking worker plus graceful handoff and sweeps.

Small overrides in the manner of RQ's ``HerokuWorker``:

- SIGTERM, SIGHUP or SIGINT to the worker starts a handoff: the signal is forwarded to
  the work horse (which RQ puts in its own process group, so the horse sees the same
  thing whether one PID or the whole group was signalled); the turn stops at its next
  safe point, commits and goes back to the front of its queue. If the horse has not
  ended by the grace deadline it is killed and the run requeued as a dirty restart.
- After the horse exits, the worker reconciles the run: a horse that died mid-turn
  (OOM, ``crash``) is requeued at once rather than after its lease expires.
- Maintenance runs every sweep interval, and each worker sweeps for dead leases.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import time
from types import FrameType
from typing import Any

import redis
from rq.exceptions import StopRequested
from rq.job import Job
from rq.queue import Queue
from rq.worker import WorkerStatus

from runner import queueing
from runner.errors import BadInput
from runner.events import Status
from runner.keys import Keys
from runner.outage import is_outage
from runner.settings import Settings
from runner.store import RunStore
from workers import sweeper
from workers.outages import OutageTolerantWorker
from workers.turn import current_stop

log = logging.getLogger("runner.worker")
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
HANDOFF_SIGNAL = signal.SIGUSR1  # worker -> horse: hand the turn off
PR_SET_PDEATHSIG = 1


class RunnerWorker(OutageTolerantWorker):
    """An RQ worker whose turns survive the worker being stopped or killed."""

    def __init__(self, queues: list[Queue], settings: Settings, store: RunStore, **kw: Any):
        super().__init__(
            queues,
            # RQ blocks on the queue for worker_ttl - 15 s; keep that to one sweep interval.
            worker_ttl=int(settings.sweep_seconds) + 16,
            maintenance_interval=max(int(settings.sweep_seconds), 1),
            job_monitoring_interval=1,
            **kw,
        )
        self.settings = settings
        self.store = store
        self._handoff_at: float | None = None
        self._handoff_unsent = False  # a stop came before the horse existed to be told
        self._horse_killed = False
        self._horse_exit = ""
        self._critical = False
        self._next_sweep = 0.0

    # -- signals in the worker ----------------------------------------------------------

    def _install_signal_handlers(self) -> None:
        for sig in STOP_SIGNALS:
            signal.signal(sig, self.request_stop)

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        """Start (or, on a second signal, hurry) a handoff. Only sets state and forwards."""
        if self._handoff_at is None:
            self._handoff_at = time.monotonic()
            self.log.info("Worker %s: %s: handing off", self.name, signal.Signals(signum).name)
        self._stop_requested = True
        if self.horse_pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.horse_pid, HANDOFF_SIGNAL)
        elif self.get_state() != WorkerStatus.BUSY and not self._critical:
            raise StopRequested()
        else:
            self._handoff_unsent = True

    # -- signals in the work horse ------------------------------------------------------

    def setup_work_horse_signals(self) -> None:
        """In the horse: every stop signal asks the turn to hand off; die with the worker."""
        stop = current_stop(self.settings)
        for sig in (*STOP_SIGNALS, HANDOFF_SIGNAL):
            signal.signal(sig, lambda *_: stop.request("handoff"))
        _die_with_parent()

    # -- monitoring ---------------------------------------------------------------------

    def maintain_heartbeats(self, job: Job, execution: Any) -> None:
        """Every second while a turn runs: RQ's heartbeats, the grace deadline, the sweep."""
        try:
            super().maintain_heartbeats(job, execution)
        except redis.RedisError as exc:
            if not is_outage(exc):
                raise
            # Raising here would end the worker and, with it, the turn; ride out the outage.
            self.skipped("heartbeat", exc)
        if self._handoff_unsent and self.horse_pid:
            # The stop came between dequeue and fork: tell the turn now, or it would run on
            # to the deadline below and be killed as a dirty restart, its tool left running.
            self._handoff_unsent = False
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.horse_pid, HANDOFF_SIGNAL)
        deadline = self.settings.shutdown_grace + 0.5
        late = self._handoff_at is not None and time.monotonic() - self._handoff_at > deadline
        if late and self.horse_pid and not self._horse_killed:
            self.log.warning("Worker %s: turn did not hand off in time; killing it", self.name)
            self._horse_killed = True
            self.kill_horse(signal.SIGKILL)
        self._maybe_sweep()

    def run_maintenance_tasks(self) -> None:
        """RQ's registry cleaning, then our sweep."""
        super().run_maintenance_tasks()
        self._maybe_sweep()

    def _maybe_sweep(self) -> None:
        if time.monotonic() < self._next_sweep:
            return
        self._next_sweep = time.monotonic() + self.settings.sweep_seconds
        lock_ms = max(int(self.settings.sweep_seconds * 900), 100)
        self._critical = True  # a stop signal must not cut a requeue in half
        try:
            if not self.store.redis.set(self.store.keys.sweep_lock, self.name, nx=True, px=lock_ms):
                return
            report = sweeper.sweep(self.store, self.connection, self.settings)
        except redis.RedisError as exc:
            if not is_outage(exc):
                raise
            self.skipped("sweep", exc)
            return
        finally:
            self._critical = False
        for run_id in report.requeued + report.repushed:
            self.log.info("Worker %s: swept %s back into its queue", self.name, run_id)

    # -- after the horse ----------------------------------------------------------------

    def handle_work_horse_killed(self, job: Job, retpid: int, ret_val: int, rusage: Any) -> None:
        """Remember how the horse died, for the requeue reason."""
        if ret_val and os.WIFSIGNALED(ret_val):
            self._horse_exit = f"signal {signal.Signals(os.WTERMSIG(ret_val)).name}"
        else:
            self._horse_exit = f"exit status {os.WEXITSTATUS(ret_val) if ret_val else ret_val}"
        super().handle_work_horse_killed(job, retpid, ret_val, rusage)  # type: ignore[no-untyped-call]

    def execute_job(self, job: Job, queue: Queue) -> None:
        """Run the turn in a horse, then make sure the run is not left behind."""
        self._horse_exit = ""
        super().execute_job(job, queue)
        self._critical = True
        try:
            self._reconcile(job.id, queue.name)
        except redis.RedisError as exc:
            if not is_outage(exc):
                raise
            # The dead horse renews its lease no more, so a sweep requeues the run later.
            self.skipped("reconcile", exc, job.id)
        finally:
            self._critical = False

    def _reconcile(self, run_id: str, queue: str) -> None:
        try:
            record = self.store.get(run_id)
        except BadInput:  # no such run, or a plain RQ job whose id is not a run's
            return
        retention = self.settings.retention_seconds
        if record.status is Status.RUNNING and record.worker == self.name:
            reason = f"turn process on {self.name} died ({self._horse_exit or 'unknown'})"
            status = self.store.requeue_dead(
                run_id,
                reason,
                self.settings.max_dirty_restarts,
                epoch=record.epoch,
                lease_gone=False,
            )
            if status is Status.QUEUED:
                queueing.push_front(self.connection, run_id, queue, retention)
        elif record.status is Status.QUEUED and not self._in_queue(run_id, queue):
            queueing.push_front(self.connection, run_id, queue, retention)

    def _in_queue(self, run_id: str, queue: str) -> bool:
        return queueing.in_queue(self.connection, run_id, queue)


def _die_with_parent() -> None:
    """Have the kernel SIGKILL this horse if its worker dies (Linux), so no orphan runs on."""
    parent = os.getppid()
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the worker died before prctl took effect
        os._exit(1)


def default_name() -> str:
    """``host.pid``: readable in follow output and unique on one host."""
    return f"{socket.gethostname()}.{os.getpid()}"


def check_server(client: redis.Redis) -> list[str]:
    """Warnings about a server that can lose runs: evicting keys, or not persisting."""
    warnings = []
    try:
        policy = client.config_get("maxmemory-policy").get("maxmemory-policy", "")
        aof = client.config_get("appendonly").get("appendonly", "no")
        save = client.config_get("save").get("save", "")
    except redis.ResponseError:
        return ["cannot read the server's configuration (CONFIG GET refused); check it yourself"]
    if policy and policy != "noeviction":
        warnings.append(
            f"maxmemory-policy is {policy}: the server may evict run keys; use noeviction"
        )
    if aof != "yes" and not save:
        warnings.append("persistence is off (no AOF, no RDB): a server restart loses every run")
    return warnings


def main(queues: list[str], name: str | None, burst: bool, settings: Settings) -> int:
    """Run a worker until stopped; returns the exit code."""
    from runner.connection import connect, redis_url
    from runner.logs import setup

    setup()
    url = redis_url(settings)
    store = RunStore(connect(settings, url=url), Keys(settings.prefix), settings.retention_seconds)
    rq_conn = connect(settings, url=url, decode=False)
    for warning in check_server(store.redis):
        log.warning(warning)
    worker = RunnerWorker(
        [Queue(q, connection=rq_conn) for q in queues],
        settings,
        store,
        connection=rq_conn,
        name=name or default_name(),
    )
    worker.work(burst=burst, logging_level="INFO")
    return 0
