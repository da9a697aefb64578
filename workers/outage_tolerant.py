"""RQ's queue and worker made outage-tolerant (guarantee 10): refused writes are waited out.

With ``maxmemory`` reached under ``noeviction`` every write of RQ's idle loop fails with
``OutOfMemoryError``: the worker's heartbeat and state (``HSET``), the dequeue
(``LMOVE``), the registry cleaning and the bookkeeping around a job. RQ rides out a
dropped connection but raises anything else, and its work loop then quits with a
traceback. Here each of those writes is skipped while the server refuses it; the
dequeue backs off (so no turn process is forked into a full server), and the worker
logs one plain line when the outage starts and one when it is over.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable, Iterator
from typing import Any

import redis
from rq.exceptions import DequeueTimeout
from rq.job import Job
from rq.queue import Queue
from rq.worker import Worker

from runner import outage

log = logging.getLogger("runner.worker")
MAX_WAIT = 2.0  # seconds between dequeue tries; short, so a stop is still seen in time


class Notice:
    """Logs an outage once when it starts and once when it ends, not at every retry."""

    def __init__(self) -> None:
        self.worker = ""
        self.what: str | None = None
        self.wait = 0.25

    def refused(self, exc: redis.RedisError) -> float:
        """Note a refused write; returns how long to back off before the next try."""
        what = outage.describe(exc)
        if what != self.what:
            self.what = what
            log.warning(f"{what}; waiting", extra={"worker": self.worker, "error": str(exc)})
        self.wait = min(self.wait * 2, MAX_WAIT)
        return self.wait

    def accepted(self) -> None:
        """The server took a write again."""
        if self.what is not None:
            log.info("server accepts writes again", extra={"worker": self.worker})
        self.what = None
        self.wait = 0.25


NOTICE = Notice()  # one per process: the dequeue below is a class method


def refusing(exc: BaseException) -> bool:
    """An outage error RQ does not handle itself (it retries connection errors)."""
    return outage.is_outage(exc) and not isinstance(exc, redis.ConnectionError)


class OutageQueue(Queue):
    """RQ's queue whose dequeue waits out a server that refuses writes."""

    @classmethod
    def dequeue_any(  # type: ignore[override]
        cls, queues: Iterable[Queue], timeout: int | None, connection: Any, **kw: Any
    ) -> tuple[Job, Queue] | None:
        """RQ's dequeue; on a refused write, back off and report "nothing dequeued"."""
        try:
            found = super().dequeue_any(queues, timeout, connection, **kw)
        except redis.RedisError as exc:
            if not refusing(exc):
                raise
            time.sleep(NOTICE.refused(exc))
            raise DequeueTimeout(str(exc)) from exc
        NOTICE.accepted()
        return found


@contextlib.contextmanager
def tolerated(pipeline: Any = None) -> Iterator[None]:
    """Skip a write the server refuses (one queued on a pipeline fails when it runs)."""
    try:
        yield
    except redis.RedisError as exc:
        if pipeline is not None or not refusing(exc):
            raise
        NOTICE.refused(exc)


class OutageTolerantWorker(Worker):
    """An RQ worker whose idle loop and bookkeeping survive a server refusing writes.

    Each override is RQ's own method with the refused write skipped: the worker's own
    key, state and registries are RQ's bookkeeping; a run's state is in its record.
    """

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        NOTICE.worker = self.name
        # Only the dequeue goes through it; the queues the caller built stay as they are.
        self.queue_class = OutageQueue

    def skipped(self, what: str, exc: redis.RedisError, run: str | None = None) -> None:
        """Log a write of ours the server did not take: once per outage if it refuses."""
        if refusing(exc):
            NOTICE.refused(exc)
            return
        fields = {"worker": self.name, "error": str(exc), **({"run": run} if run else {})}
        log.warning(f"{what} skipped", extra=fields)

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        with tolerated(pipeline):
            super().heartbeat(timeout, pipeline)

    def set_state(self, state: str, pipeline: Any = None) -> None:
        with tolerated(pipeline):
            super().set_state(state, pipeline)

    def check_for_suspension(self, burst: bool) -> None:
        """RQ's ``rq suspend`` check writes the heartbeat: not suspended if refused."""
        with tolerated():
            super().check_for_suspension(burst)

    def prepare_job_execution(self, job: Job, remove_from_intermediate_queue: bool = False) -> None:
        """In the horse: the turn's claim waits out the outage on its own."""
        with tolerated():
            super().prepare_job_execution(job, remove_from_intermediate_queue)

    def handle_execution_ended(self, job: Job, queue: Queue, heartbeat_ttl: int) -> None:
        with tolerated():
            super().handle_execution_ended(job, queue, heartbeat_ttl)

    def handle_job_success(self, job: Job, queue: Queue, *args: Any, **kw: Any) -> None:
        """In the horse: the run's own record is already written."""
        with tolerated():
            super().handle_job_success(job, queue, *args, **kw)

    def register_death(self) -> None:
        """As the worker exits: its key expires by itself if this is refused."""
        with tolerated():
            super().register_death()  # type: ignore[no-untyped-call]

    def run_maintenance_tasks(self) -> None:
        with tolerated():
            super().run_maintenance_tasks()  # type: ignore[no-untyped-call]

    def execute_job(self, job: Job, queue: Queue) -> None:
        """The run is not lost if the bookkeeping around it is refused: the reconcile
        after this, or a sweep, puts it back in its queue."""
        with tolerated():
            super().execute_job(job, queue)
