"""Section 5: one-step turns per second through real workers, against plain RQ jobs."""

from __future__ import annotations

import json

from rq.job import Job, JobStatus
from rq.queue import Queue

from runner.bench.context import Bench
from runner.bench.procs import spawn_worker, wait_exit
from runner.bench.stats import Figure, Spread
from runner.client import Client, Submission
from runner.errors import BenchError
from runner.events import Status
from runner.keys import new_run_id

NOOP = "runner.bench.noop"
ONE_STEP = json.dumps({"steps": [{"content": "Done."}]})


def _drain(b: Bench, queue: str, ids: list[str]) -> float:
    """Start burst workers on ``queue``; returns the jobs per second they sustained.

    Each worker's rate is its job count over the span from its first job's start to its
    last job's end (RQ's own timestamps), so start-up and exit are left out and turns
    and plain jobs are timed alike; the fleet's rate is the sum.
    """
    workers = [spawn_worker(b, queue, burst=True) for _ in range(b.plan.workers)]
    for w in workers:
        if wait_exit(b, w, timeout=300) != 0:
            raise BenchError(f"worker {w.name} failed: {b.log_tail(w.log)}")
    jobs = Job.fetch_many(ids, connection=b.rq)
    done = [j for j in jobs if j is not None and j.get_status() == JobStatus.FINISHED]
    if len(done) != len(ids):
        raise BenchError(f"only {len(done)} of {len(ids)} jobs on {queue} finished")
    by_worker: dict[str, list[Job]] = {}
    for job in done:
        by_worker.setdefault(job.worker_name or "", []).append(job)
    return sum(_rate(js) for js in by_worker.values())


def _rate(jobs: list[Job]) -> float:
    starts = [j.started_at for j in jobs if j.started_at is not None]
    ends = [j.ended_at for j in jobs if j.ended_at is not None]
    return len(jobs) / (max(ends) - min(starts)).total_seconds()


def _turns(b: Bench, client: Client) -> float:
    queue = b.name("turns")
    sub = Submission(
        prompt="benchmark", model="scripted", queue=queue, max_steps=5, script=ONE_STEP
    )
    ids = []
    for _ in range(b.plan.turns):
        ids.append(client.submit(sub))
        b.job_ids.add(ids[-1])
    rate = _drain(b, queue, ids)
    failed = [r.id for r in b.store.get_many(ids) if r.status is not Status.SUCCEEDED]
    if failed:
        raise BenchError(f"{len(failed)} bench turns did not succeed, e.g. {failed[0]}")
    return rate


def _plain_jobs(b: Bench) -> float:
    queue = b.name("noop")
    q = Queue(queue, connection=b.rq)
    ids = []
    for _ in range(b.plan.turns):
        # Run-shaped ids: the runner worker looks every finished job up as a run.
        ids.append(new_run_id())
        b.job_ids.add(ids[-1])
        q.enqueue(NOOP, job_id=ids[-1], result_ttl=600)
    return _drain(b, queue, ids)


def throughput(b: Bench) -> list[Figure]:
    """One-step scripted turns/s against no-op jobs/s, same worker class and count."""
    client = Client(b.settings)
    turns: list[float] = []
    plain: list[float] = []
    for i in range(b.plan.rounds):
        b.progress(
            f"  round {i + 1}/{b.plan.rounds}: {b.plan.turns} turns, then {b.plan.turns} plain jobs"
        )
        turns.append(_turns(b, client))
        plain.append(_plain_jobs(b))
    return [
        Figure(
            "one-step turns/s",
            "1/s",
            Spread.of(turns),
            "no-op jobs/s",
            Spread.of(plain),
            note=f"{b.plan.workers} `runner worker --burst`; {b.plan.turns} scripted one-step "
            f"turns vs {b.plan.turns} no-op jobs ({NOOP}) a round, {b.plan.rounds} rounds",
        )
    ]
