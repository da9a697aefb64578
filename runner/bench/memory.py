"""Section 7: Redis bytes per committed step, and what a worker holds in memory."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from runner.bench.commits import Transcript
from runner.bench.context import Bench
from runner.bench.procs import (
    LineReader,
    WorkerProc,
    children,
    rss,
    spawn_worker,
    stop_worker,
    wait_proc,
    wait_registered,
    wait_until,
)
from runner.bench.stats import Figure, Spread
from runner.client import Client, Submission
from runner.events import Status

SAMPLES = 10
BARE = "import redis, rq, sys, time; print('ready', flush=True); time.sleep(120)"
# A few quick tool steps, then a long think: the turn is sampled in the middle of it.
MID_TURN = json.dumps(
    {
        "steps": [
            *({"content": f"step {i}", "tool": "list_dir", "args": {}} for i in range(5)),
            {"content": "thinking it over", "sleep": 2},
        ]
    }
)


def stream_memory(tr: Transcript) -> Figure:
    """Growth of the stream in Redis per step, between the notes taken while it grew."""
    every = tr.b.plan.memory_every
    per_step: list[float] = []
    payload: list[float] = []
    for (s0, m0, p0), (s1, m1, p1) in zip(tr.memory, tr.memory[1:], strict=False):
        if s1 - s0 >= every / 2:
            per_step.append((m1 - m0) / (s1 - s0))
            payload.append((p1 - p0) / (s1 - s0))
    return Figure(
        "Redis bytes per step",
        "B",
        Spread.of(per_step),
        "payload bytes per step",
        Spread.of(payload),
        note="growth of the stream's MEMORY USAGE vs the events' own JSON",
    )


def _sample(pids: list[int]) -> list[float]:
    samples = []
    for _ in range(SAMPLES):
        samples.append(float(sum(rss(pid) for pid in pids)))
        time.sleep(0.05)
    return samples


def _bare_rss(b: Bench) -> list[float]:
    proc = b.spawn([sys.executable, "-c", BARE], "bare.log", stdout=subprocess.PIPE)
    assert proc.stdout is not None
    LineReader(proc.stdout).next(timeout=30)
    try:
        return _sample([proc.pid])
    finally:
        proc.kill()
        wait_proc(b, proc, 10, "bare.log")


def _mid_turn(b: Bench, w: WorkerProc, queue: str) -> list[float]:
    sub = Submission("benchmark", "scripted", queue, 20, MID_TURN)
    run_id = Client(b.settings).submit(sub)
    b.job_ids.add(run_id)

    def thinking() -> list[int] | None:
        record = b.store.get(run_id)
        horses = children(w.pid)
        return horses if record.status is Status.RUNNING and record.steps >= 10 and horses else None

    horses = wait_until(thinking, 60, "the turn to reach its long think")
    return _sample([w.pid, *horses])


def worker_rss(b: Bench) -> list[Figure]:
    """RSS of an idle worker, and of worker + work horse in the middle of a turn."""
    queue = b.name("memory")
    w = spawn_worker(b, queue)
    try:
        bare = _bare_rss(b)  # while the worker starts
        wait_registered(b, [w])
        time.sleep(0.5)  # let it settle into its blocking dequeue
        idle = _sample([w.pid])
        busy = _mid_turn(b, w, queue)
    finally:
        stop_worker(b, w)
    floor = "bare python"
    bare_note = "VmRSS; floor: a python process that imported redis and rq, idle"
    return [
        Figure("worker RSS, idle", "B", Spread.of(idle), floor, Spread.of(bare), note=bare_note),
        Figure(
            "worker + horse RSS, mid-turn",
            "B",
            Spread.of(busy),
            f"2 x {floor}",
            Spread.of([2 * x for x in bare]),
            note="VmRSS summed; the forked horse shares pages with the worker",
        ),
    ]
