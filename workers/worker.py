"""The RQ worker that runs turns: RQ's forking worker plus graceful handoff and sweeps.

Small overrides in the manner of RQ's ``HerokuWorker``:

- SIGTERM, SIGHUP or SIGINT to the worker starts a handoff. The handler only records the
  request and forwards it: it never raises, so no signal can cut a sweep or a requeue in
  half, and none is lost either: an idle worker waits on its queues in short slices and
  stops at the end of the slice (or of the sweep) it is in. The signal is forwarded to
  the work horse (which RQ puts in its own process group, so the horse sees the same
  thing whether one PID or the whole group was signalled); the turn stops at its next
  safe point, commits and goes back to the front of its queue. If the horse has not
  ended by the grace deadline it is killed and the run requeued as a dirty restart.
- After the horse exits, the worker reconciles the run: a horse that died mid-turn
  (OOM, ``crash``) is requeued at once rather than after its lease expires.
- Maintenance runs every sweep interval, and each worker sweeps for dead leases.
- A worker restarted under the name of one that was SIGKILLed on this host takes its RQ
  registration over; a live worker of that name makes it refuse to start.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import time
from types import FrameType
from typing import Any

import redis
from rq.exceptions import DequeueTimeout, StopRequested
from rq.job import Job
from rq.queue import Queue
from rq.worker import WorkerStatus

from runner import fairness, metrics, queueing
from runner.errors import BadInput, UnsafeServer
from runner.events import Status
from runner.keys import Keys
from runner.outage import is_outage
from runner.serverinfo import Severity, check_server
from runner.settings import Settings
from runner.store import RunStore
from workers import sweeper
from workers.health import Beacon
from workers.names import default_name, take_over_name
from workers.outage_tolerant import OutageTolerantWorker
from workers.slots import SlotGate
from workers.turn import current_stop

log = logging.getLogger("runner.worker")
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
HANDOFF_SIGNAL = signal.SIGUSR1  # worker -> horse: hand the turn off
PR_SET_PDEATHSIG = 1
DEQUEUE_SLICE = 1  # seconds an idle worker blocks on its queues before it looks for a stop
MAX_BACKOFF = 10.0  # seconds between tries to reach a server that is down


class RunnerWorker(OutageTolerantWorker):
    """An RQ worker whose turns survive the worker being stopped or killed."""

    def __init__(self, queues: list[Queue], settings: Settings, store: RunStore, **kw: Any):
        super().__init__(
            queues,
            # The TTL of RQ's worker key; an idle worker waits in DEQUEUE_SLICE slices.
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
        self._next_sweep = 0.0
        self.beacon = Beacon(settings.health_file, self.name)  # runner worker --health
        self.slots = SlotGate(store, self.connection, settings, self.skipped)  # issue 17

    # -- signals in the worker ----------------------------------------------------------

    def _install_signal_handlers(self) -> None:
        for sig in STOP_SIGNALS:
            signal.signal(sig, self.request_stop)

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        """Start (or, on a second signal, hurry) a handoff. Only sets state and forwards.

        It never raises: wherever the worker is (a sweep, a requeue, a dequeue whose job is
        already on its way), it gets to the end of it; the dequeue loop then stops.
        """
        if self._handoff_at is None:
            self._handoff_at = time.monotonic()
            log.info("handing off on %s", signal.Signals(signum).name, extra={"worker": self.name})
        self._stop_requested = True
        if self.horse_pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.horse_pid, HANDOFF_SIGNAL)
        else:
            self._handoff_unsent = True

    def dequeue_job_and_maintain_ttl(
        self, timeout: int | None, max_idle_time: int | None = None
    ) -> tuple[Job, Queue] | None:
        """RQ's dequeue loop, but in short waits with a stop check before each.

        RQ's own loop blocks for up to ``timeout``, retries an unreachable server with
        back-off for ever, and never looks at a stop request.
        """
        if max_idle_time is not None:  # not used by runner; RQ's loop handles it
            return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
        with contextlib.suppress(redis.ConnectionError, redis.TimeoutError):
            self.set_state(WorkerStatus.IDLE)  # the loop below rides out an outage
        self.procline(f"Listening on {','.join(self.queue_names())}")  # type: ignore[no-untyped-call]
        backoff = 1.0
        while True:
            self._stop_if_requested()
            self.beacon.touch("idle")
            try:
                self.heartbeat()
                if self.should_run_maintenance_tasks:
                    self.run_maintenance_tasks()
                self._stop_if_requested()  # a sweep may have taken a while
                found = self.queue_class.dequeue_any(
                    self._ordered_queues,
                    None if timeout is None else DEQUEUE_SLICE,
                    connection=self.connection,
                    job_class=self.job_class,
                    serializer=self.serializer,
                    death_penalty_class=self.death_penalty_class,
                )
            except DequeueTimeout:
                continue
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                log.warning(
                    "server unreachable; retrying", extra={"worker": self.name, "error": exc}
                )
                self._nap(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            if found is not None and not self.slots.admit(found[0].id, found[1].name, self.name):
                continue  # deferred: its key is full
            if found is not None:
                job, queue = found
                self.reorder_queues(reference_queue=queue)
                job.redis_server_version = self.get_redis_server_version()  # type: ignore[no-untyped-call]
                log.info("dequeued", extra={"run": job.id, "worker": self.name})
            return found  # None only in burst mode: the queues are empty

    def _nap(self, seconds: float) -> None:
        """Sleep, but no longer than until a stop is requested."""
        until = time.monotonic() + seconds
        while not self._stop_requested and time.monotonic() < until:
            self.beacon.touch("outage")
            time.sleep(min(0.1, max(until - time.monotonic(), 0)))

    def _stop_if_requested(self) -> None:
        if self._stop_requested:
            log.info("stopping", extra={"worker": self.name})
            raise StopRequested()

    # -- signals in the work horse ------------------------------------------------------

    def setup_work_horse_signals(self) -> None:
        """In the horse: every stop signal asks the turn to hand off; die with the worker."""
        stop = current_stop(self.settings)
        for sig in (*STOP_SIGNALS, HANDOFF_SIGNAL):
            signal.signal(sig, lambda *_: stop.request("handoff"))
        _die_with_parent()

    # -- registration -------------------------------------------------------------------

    def register_birth(self) -> None:
        """RQ's registration, first taking over that of a dead worker of the same name."""
        take_over_name(self.connection, self.key, self.name)
        super().register_birth()  # type: ignore[no-untyped-call]

    # -- monitoring ---------------------------------------------------------------------

    def maintain_heartbeats(self, job: Job, execution: Any) -> None:
        """Every second while a turn runs: RQ's heartbeats, the grace deadline, the sweep."""
        self.beacon.touch("busy")
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
            log.warning("turn did not hand off in time; killing it", extra={"worker": self.name})
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
        try:
            if not self.store.redis.set(self.store.keys.sweep_lock, self.name, nx=True, px=lock_ms):
                return
            report = sweeper.sweep(self.store, self.connection, self.settings)
            metrics.lease_expired(len(report.requeued) + len(report.suspended))
            metrics.dirty_restart(len(report.requeued))
        except redis.RedisError as exc:
            if not is_outage(exc):
                raise
            self.skipped("sweep", exc)
            return
        for run_id in report.requeued + report.repushed:
            log.info("swept back into its queue", extra={"run": run_id, "worker": self.name})

    # -- after the horse ----------------------------------------------------------------

    def handle_work_horse_killed(self, job: Job, retpid: int, ret_val: int, rusage: Any) -> None:
        """Remember how the horse died, for the requeue reason."""
        if ret_val and os.WIFSIGNALED(ret_val):
            self._horse_exit = f"signal {signal.Signals(os.WTERMSIG(ret_val)).name}"
        else:
            self._horse_exit = f"exit status {os.WEXITSTATUS(ret_val) if ret_val else ret_val}"
        super().handle_work_horse_killed(job, retpid, ret_val, rusage)  # type: ignore[no-untyped-call]

    def handle_job_failure(
        self,
        job: Job,
        queue: Queue,
        started_job_registry: Any = None,
        exc_string: str = "",
        execution: Any = None,
    ) -> None:
        """Fail the job only while the run is still this worker's attempt.

        A horse frozen past its lease dies after its run went on (queued again, running,
        parked or ended elsewhere): RQ would mark the job failed under the attempt that
        holds it now, and keep it in its failed registry after that attempt succeeds.
        Only this execution's entry goes then.
        """
        try:
            record = self.store.get(job.id)
            here = record.status is Status.RUNNING or record.terminal  # as this attempt left it
            went_on = not (here and record.worker == self.name)
        except (BadInput, redis.RedisError):  # not a run's job, or no server: RQ's way
            went_on = False
        if not went_on:
            super().handle_job_failure(job, queue, started_job_registry, exc_string, execution)
            return
        log.warning("turn process died after its run went on elsewhere", extra={"run": job.id})
        with self.connection.pipeline() as pipe:
            self.cleanup_execution(job, pipeline=pipe, execution=execution)
            pipe.execute()

    def execute_job(self, job: Job, queue: Queue) -> None:
        """Run the turn in a horse, then make sure the run is not left behind."""
        self._horse_exit = ""
        super().execute_job(job, queue)
        try:
            self._reconcile(job.id, queue.name)
            self.slots.after(job.id)
        except redis.RedisError as exc:
            if not is_outage(exc):
                raise
            # The dead horse renews its lease no more, so a sweep requeues the run later
            # (and its slot, renewed no more either, frees itself after a lease).
            self.skipped("reconcile", exc, job.id)

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
            metrics.run_ended(str(status), queue)
            if status is Status.QUEUED:
                metrics.dirty_restart()
            log.warning(
                "turn process died; %s",
                "requeued" if status is Status.QUEUED else f"run is {status}",
                extra={"run": run_id, "epoch": record.epoch, "worker": self.name},
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


def refuse_unsafe_server(client: redis.Redis) -> None:
    """Log each warning about the server; UnsafeServer on a fatal one."""
    for finding in check_server(client):
        if finding.severity is Severity.FATAL:
            raise UnsafeServer(finding.message)
        if finding.severity is Severity.WARN:
            log.warning(finding.message)


def main(queues: list[str], name: str | None, burst: bool, settings: Settings) -> int:
    """Run a worker until stopped; returns the exit code."""
    from runner.logs import setup
    from workers.tools.env import hide_environment

    setup(fmt=settings.log_format)
    hide_environment()  # tools run as this user: /proc/PID/environ must not show our secrets
    from workers.tools import load_tools

    load_tools(settings)  # user tools and the MCP file: a bad one stops the worker here
    from runner import tracing

    tracing.setup()  # OTLP export when OTEL_EXPORTER_OTLP_ENDPOINT is set
    # Before any fork: the horses inherit where to write their counts.
    served = metrics.serve(settings.metrics_port) if settings.metrics_port else None
    try:
        return _work(queues, name, burst, settings)
    finally:
        if served is not None:
            metrics.stop_serving(served)


def _work(queues: list[str], name: str | None, burst: bool, settings: Settings) -> int:
    from runner.connection import connect, redis_url

    url = redis_url(settings)
    store = RunStore(connect(settings, url=url), Keys(settings.prefix), settings.retention_seconds)
    rq_conn = connect(settings, url=url, decode=False)
    refuse_unsafe_server(store.redis)
    from runner import replication

    refused = replication.refusal(settings, store.redis)  # RUNNER_COMMIT_AOF (issue 17)
    if refused:
        raise UnsafeServer(refused)
    queues = fairness.listen_order(queues)  # Q:high, Q, Q:low (submit --priority)
    worker = RunnerWorker(
        [Queue(q, connection=rq_conn) for q in queues],
        settings,
        store,
        connection=rq_conn,
        name=name or default_name(),
    )
    metrics.watch_queues(lambda: {q: Queue(q, connection=rq_conn).count for q in queues})
    metrics.watch_runs(store.redis, store.keys)
    try:
        worker.work(burst=burst, logging_level="INFO")
    finally:
        worker.beacon.remove()
    return 0
