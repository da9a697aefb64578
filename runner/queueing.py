"""The RQ side of a run: the job that carries it, and putting it back in its queue.

A run is an ordinary RQ job with the same id, so ``rq info`` and dashboards see it; the
run's own state lives in the run store, never in RQ's ``meta``.
"""

from __future__ import annotations

import redis
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.worker import Worker

TURN_FUNC = "workers.turn.run_turn"


def enqueue(rq_conn: redis.Redis, run_id: str, queue: str, retention: int, title: str) -> None:
    """Create the RQ job for a new run at the back of its queue."""
    Queue(queue, connection=rq_conn).enqueue(
        TURN_FUNC,
        run_id,
        job_id=run_id,
        job_timeout=-1,  # a turn runs as long as it runs; leases, not RQ, detect death
        result_ttl=retention,
        failure_ttl=retention,
        ttl=None,
        description=title,
    )


def in_queue(rq_conn: redis.Redis, run_id: str, queue: str) -> bool:
    """Whether the run's job waits in its queue.

    RQ's intermediate list does not count: a job stays there when the worker that popped
    it died before starting it (and, for multi-queue workers, after it ran), and RQ only
    clears it a minute later. Callers give a just-popped job a grace period instead.
    """
    return rq_conn.lpos(Queue(queue, connection=rq_conn).key, run_id) is not None


def queued_ids(rq_conn: redis.Redis, queue: str) -> set[str]:
    """Ids of the jobs waiting in ``queue`` (the same rule as :func:`in_queue`)."""
    ids: list[bytes] = rq_conn.lrange(Queue(queue, connection=rq_conn).key, 0, -1)  # type: ignore[assignment]
    return {i.decode() for i in ids}


def push_front(
    rq_conn: redis.Redis, run_id: str, queue: str, retention: int, title: str = ""
) -> None:
    """Put the run's job at the front of its queue, whatever RQ thought of it before."""
    q = Queue(queue, connection=rq_conn)
    try:
        job = Job.fetch(run_id, connection=rq_conn)
    except NoSuchJobError:
        q.enqueue(
            TURN_FUNC,
            run_id,
            job_id=run_id,
            job_timeout=-1,
            result_ttl=retention,
            failure_ttl=retention,
            at_front=True,
            description=title,
        )
        return
    registry = q.started_job_registry
    # RQ's abandoned-job cleanup fails a job whose execution entry expires while the job
    # is STARTED. Dropping every entry of this run (a dead worker's execution record may
    # be gone already, so list them by their "id:" prefix) keeps RQ from failing a run
    # that lives on elsewhere.
    entries: list[bytes] = rq_conn.zrange(registry.key, 0, -1)  # type: ignore[assignment]
    stale = [e for e in entries if e.startswith(f"{run_id}:".encode())]
    with rq_conn.pipeline() as pipe:
        if stale:
            pipe.zrem(registry.key, *stale)
        q.failed_job_registry.remove(job, pipeline=pipe)
        q.finished_job_registry.remove(job, pipeline=pipe)
        job.set_status(JobStatus.QUEUED, pipeline=pipe)
        pipe.persist(job.key)
        # Or RQ fails the job later as "stuck in intermediate queue".
        pipe.lrem(q.intermediate_queue_key, 0, run_id)
        q.push_job_id(run_id, pipeline=pipe, at_front=True)
        pipe.execute()


def workers_serving(rq_conn: redis.Redis, queue: str) -> int:
    """How many live workers listen on ``queue``."""
    return int(Worker.count(connection=rq_conn, queue=Queue(queue, connection=rq_conn)))


def remove(rq_conn: redis.Redis, run_id: str, queue: str) -> None:
    """Take a cancelled run's job out of its queue."""
    Queue(queue, connection=rq_conn).remove(run_id)
