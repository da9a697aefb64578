"""Section 6: how soon a turn goes on after its worker is stopped or killed."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from dataclasses import dataclass, field

from rq.job import Job
from rq.queue import Queue

from runner.bench.context import Bench
from runner.bench.procs import (
    WorkerProc,
    spawn_worker,
    stop_worker,
    wait_exit,
    wait_registered,
    wait_until,
)
from runner.bench.stats import Figure, Spread
from runner.bench.throughput import NOOP
from runner.client import Client, Submission
from runner.errors import BenchError, NoSuchRun
from runner.events import MessageEvent, Status, StatusEvent
from runner.keys import new_run_id
from runner.store import RunRecord

THINK = 0.05  # the scripted model's think time per step
POOL = 2


def long_script(steps: int = 3000) -> str:
    """A turn that goes on for minutes: short thoughts, each with a cheap tool call."""
    step = {"tool": "list_dir", "args": {}, "sleep": THINK}
    return json.dumps({"steps": [{"content": f"step {i}", **step} for i in range(steps)]})


@dataclass
class Pool:
    """Two workers on one queue: one holds the turn, the other is idle to take it over."""

    b: Bench
    queue: str
    workers: list[WorkerProc] = field(default_factory=list)

    def fill(self) -> None:
        self.workers = [w for w in self.workers if w.alive()]
        fresh = [spawn_worker(self.b, self.queue) for _ in range(POOL - len(self.workers))]
        wait_registered(self.b, fresh)
        self.workers += fresh

    def named(self, name: str) -> WorkerProc | None:
        return next((w for w in self.workers if w.name == name), None)

    def close(self) -> None:
        for w in self.workers:
            stop_worker(self.b, w)


def _pickup(b: Bench, queue: str) -> float:
    """Enqueue a no-op job; seconds until an idle worker has run it."""
    job_id = new_run_id()
    b.job_ids.add(job_id)
    t0 = time.time()
    Queue(queue, connection=b.rq).enqueue(NOOP, job_id=job_id, result_ttl=600)

    def ended() -> float | None:
        job = Job.fetch(job_id, connection=b.rq)
        return job.ended_at.timestamp() if job.ended_at else None

    return wait_until(ended, 30, "a no-op job to run") - t0


def _holding(b: Bench, pool: Pool, run_id: str) -> tuple[RunRecord, WorkerProc, str]:
    """Wait until a pool worker runs the turn and has committed a step of this attempt."""

    def ready() -> tuple[RunRecord, WorkerProc, str] | None:
        record = b.store.get(run_id)
        holder = pool.named(record.worker)
        if record.status is not Status.RUNNING or holder is None:
            return None
        last = b.store.tail(run_id, 1)[-1]
        fresh = isinstance(last, MessageEvent) and last.epoch == record.epoch
        return (record, holder, last.id) if fresh else None

    return wait_until(ready, 60, "the turn to run on a bench worker")


def _next_attempt(b: Bench, run_id: str, after: str, epoch: int, t0: float) -> tuple[float, float]:
    """Seconds from ``t0`` to the next attempt's claim, and to its first committed step."""
    claimed: float | None = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for event in b.store.read(run_id, after, block_ms=500):
            after = event.id
            if event.epoch <= epoch:
                continue
            now = time.perf_counter() - t0
            if isinstance(event, StatusEvent) and event.status is Status.RUNNING:
                claimed = now if claimed is None else claimed
            if isinstance(event, MessageEvent):
                return (claimed if claimed is not None else now), now
    raise BenchError(f"run {run_id} did not go on within 60s")


def _handoff(b: Bench, pool: Pool, run_id: str) -> tuple[float, float]:
    pool.fill()
    record, holder, last = _holding(b, pool, run_id)
    t0 = time.perf_counter()
    os.kill(holder.pid, signal.SIGTERM)
    took = _next_attempt(b, run_id, last, record.epoch, t0)
    wait_exit(b, holder, b.settings.shutdown_grace + 10)
    return took


def _crash(b: Bench, pool: Pool, run_id: str) -> tuple[float, float, float]:
    pool.fill()
    record, holder, last = _holding(b, pool, run_id)
    lease_left = b.redis.pttl(b.keys.lease(run_id)) / 1000
    t0 = time.perf_counter()
    os.killpg(holder.pid, signal.SIGKILL)
    claimed, stepped = _next_attempt(b, run_id, last, record.epoch, t0)
    wait_exit(b, holder, 10)
    return claimed, stepped, lease_left


def recovery(b: Bench) -> list[Figure]:
    """Handoff (SIGTERM) and crash (SIGKILL) of the worker holding a turn."""
    pool = Pool(b, b.name("recovery"))
    try:
        pool.fill()
        pickups = [_pickup(b, pool.queue) for _ in range(max(5, 2 * b.plan.handoffs))]
        sub = Submission("benchmark", "scripted", pool.queue, 100_000, long_script())
        run_id = Client(b.settings).submit(sub)
        b.job_ids.add(run_id)
        handoffs = []
        for i in range(b.plan.handoffs):
            b.progress(f"  handoff {i + 1}/{b.plan.handoffs}")
            handoffs.append(_handoff(b, pool, run_id))
        crashes = []
        for i in range(b.plan.crashes):
            b.progress(f"  crash {i + 1}/{b.plan.crashes}")
            crashes.append(_crash(b, pool, run_id))
        with contextlib.suppress(NoSuchRun):
            b.store.cancel(run_id)
    finally:
        pool.close()
    return _figures(b, Spread.of(pickups), handoffs, crashes)


def _figures(
    b: Bench,
    pickup: Spread,
    handoffs: list[tuple[float, float]],
    crashes: list[tuple[float, float, float]],
) -> list[Figure]:
    s = b.settings
    lease_left = Spread.of([c[2] for c in crashes])
    bound = s.lease_seconds + s.sweep_seconds
    return [
        Figure(
            "handoff → claimed",
            "s",
            Spread.of([h[0] for h in handoffs]),
            "no-op pickup",
            pickup,
            note="SIGTERM to the worker holding the turn → another worker claimed it; floor: "
            "a no-op job enqueued → run by an idle worker",
        ),
        Figure(
            "handoff → next step",
            "s",
            Spread.of([h[1] for h in handoffs]),
            "no-op pickup",
            pickup,
            note="… → the new attempt's first step committed (a repaired tool call, or the "
            f"next model step after its {THINK * 1000:.0f} ms scripted think)",
        ),
        Figure(
            "crash → claimed",
            "s",
            Spread.of([c[0] for c in crashes]),
            "lease left",
            lease_left,
            goal=f"≤ {bound:g} s",
            note="SIGKILL to the worker's process group → another worker claimed the turn; "
            "floor: the lease's PTTL at the kill; goal: lease + sweep",
        ),
        Figure(
            "crash → next step",
            "s",
            Spread.of([c[1] for c in crashes]),
            "lease left",
            lease_left,
        ),
    ]
