"""The RQ job that carries a run: no RQ timeout, and requeues that RQ cannot undo."""

from __future__ import annotations

from typing import Any

from rq import Queue
from rq.job import Job, JobStatus

from runner import queueing
from runner.client import Client, Submission
from runner.settings import Settings


def _submit(server: Any) -> tuple[Client, str]:
    client = Client(Settings(redis_url=server.url))
    run_id = client.submit(
        Submission(
            prompt="hi",
            model="scripted",
            queue="q",
            max_steps=5,
            script='{"steps": [{"content": "done"}]}',
        )
    )
    return client, run_id


def test_the_job_has_no_rq_timeout(server: Any) -> None:
    """RQ kills a job after 180 s by default; a turn runs as long as it runs."""
    client, run_id = _submit(server)
    job = Job.fetch(run_id, connection=client.rq)
    assert job.timeout == -1
    assert job.func_name == queueing.TURN_FUNC


def test_push_front_recreates_a_lost_job_without_timeout(server: Any) -> None:
    client, run_id = _submit(server)
    Job.fetch(run_id, connection=client.rq).delete()
    queueing.push_front(client.rq, run_id, "q", 3600)
    job = Job.fetch(run_id, connection=client.rq)
    assert job.timeout == -1
    assert Queue("q", connection=client.rq).job_ids[0] == run_id


def test_push_front_clears_what_rq_would_fail(server: Any) -> None:
    """A dead worker's registry entry and a stuck intermediate entry must not fail the run."""
    client, run_id = _submit(server)
    queue = Queue("q", connection=client.rq)
    client.rq.lrem(queue.key, 0, run_id)
    client.rq.zadd(queue.started_job_registry.key, {f"{run_id}:dead-execution": 1})
    client.rq.rpush(queue.intermediate_queue_key, run_id)
    job = Job.fetch(run_id, connection=client.rq)
    job.set_status(JobStatus.STARTED)
    queueing.push_front(client.rq, run_id, "q", 3600)
    assert client.rq.zcard(queue.started_job_registry.key) == 0
    assert client.rq.llen(queue.intermediate_queue_key) == 0
    assert job.get_status(refresh=True) == JobStatus.QUEUED
    assert queue.job_ids == [run_id]
