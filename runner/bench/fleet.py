"""Section fleet (issue 17): many turns on one server, the sweeper's cost, and WAIT's.

- Fleet: aggregate commits/s of 8 concurrent turn processes (each its own run, the real
  store path) ÷ the server's EVALSHA ceiling for the same commit script from one
  pipelined benchmark loop. The ratio is how much of what the server can do a fleet
  gets (client round trips and Python are the rest).
- Sweep: one sweep with QUEUED queued and RUNNING running runs (leases alive, so it
  changes nothing) ÷ one read of those indexes and the queue (what any sweep must read);
  then the same sweep with as many runs again deferred in a full key's waiting list ÷
  the sweep without them (1.0: a sweep costs the same however many runs wait).
- WAIT: a commit followed by ``WAIT 1`` ÷ a plain commit, on the same connection; only
  when the server has a replica (otherwise the figure is left out, with a note).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

from rq import Queue

from runner import replication
from runner.bench.commits import Transcript, step_events
from runner.bench.context import Bench
from runner.bench.procs import LineReader
from runner.bench.stats import Figure, Spread
from runner.errors import BenchError
from runner.events import Event, MessageEvent, Status, StatusEvent, encode
from runner.keys import new_run_id
from runner.queueing import TURN_FUNC

FLEET = 8
PIPELINE = 50


def fleet(b: Bench) -> list[Figure]:
    """The fleet figure, the sweeper's cost and (with a replica) WAIT's."""
    figures = [_fleet(b), *_sweep(b)]
    waited = _wait_cost(b)
    if waited is not None:
        figures.append(waited)
    else:
        b.progress("      WAIT cost skipped: the server has no replica")
    return figures


def _fleet(b: Bench) -> Figure:
    seconds = b.plan.fleet_seconds
    runs = [b.running_run() for _ in range(FLEET)]
    procs = [_committer(b, rid, ep, seconds, i) for i, (rid, ep) in enumerate(runs)]
    readers = [LineReader(p.stdout) for p in procs if p.stdout is not None]
    for i, reader in enumerate(readers):
        if _line(b, reader, i, 120) != b"ready":
            raise BenchError(f"committer {i} did not start: {b.log_tail(f'committer-{i}.log')}")
    for proc in procs:  # all connected: start them together
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
        proc.stdin.close()
    rates = []
    for i, reader in enumerate(readers):
        done = json.loads(_line(b, reader, i, 120 + seconds))
        rates.append(done["commits"] / done["seconds"])
    for rid, ep in runs:
        b.store.finish(rid, ep, Status.SUCCEEDED, "bench", "done")
    ceiling = [_ceiling(b, seconds / 2) for _ in range(3)]
    return Figure(
        name=f"aggregate commits/s, {FLEET} turn processes",
        unit="1/s",
        value=Spread.of([sum(rates)]),
        floor_name="EVALSHA commit ceiling, one pipelined loop",
        floor=Spread.of(ceiling),
        note=f"per process median {Spread.of(rates).median:.0f}/s",
        extra={"per_process": rates},
    )


def _line(b: Bench, reader: LineReader, i: int, timeout: float) -> bytes:
    try:
        return reader.next(timeout)[1].strip()
    except BenchError as exc:
        raise BenchError(f"committer {i}: {exc}: {b.log_tail(f'committer-{i}.log')}") from exc


def _committer(
    b: Bench, run_id: str, epoch: int, seconds: float, i: int
) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "runner.bench.committer", run_id, str(epoch), str(seconds)]
    with open(b.tmp / f"committer-{i}.log", "ab") as log:
        proc = subprocess.Popen(
            args, env=b.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
            start_new_session=True,
        )  # fmt: skip
    b.procs.append(proc)  # killed by b.close() if the bench stops early
    return proc


def _ceiling(b: Bench, seconds: float) -> float:
    """Commits/s of the commit script, PIPELINE at a time, from one loop."""
    run_id, epoch = b.running_run()
    script = b.store._scripts["commit"]
    keys = b.store._keys(run_id)
    # The same two steps over and over, encoded once: the loop spends its time waiting for
    # the server, not in Python. The ARGV is store.commit_args's, with no blobs (the 0).
    steps = [[part for e in step_events(i) for part in encode(e)] for i in (0, 1)]
    seen, n = 3, 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        pipe = b.redis.pipeline(transaction=False)
        for _ in range(PIPELINE):
            flat = steps[n % 2]
            pipe.evalsha(script.sha, len(keys), *keys, run_id, epoch, 1, seen, 0, *flat)
            seen += len(flat) // 2
            n += 1
        pipe.execute()
    rate = n / (time.perf_counter() - t0)
    b.store.finish(run_id, epoch, Status.SUCCEEDED, "bench", "done")
    return rate


def _sweep(b: Bench) -> list[Figure]:
    queued, running = b.plan.sweep_queued, b.plan.sweep_running
    queue = b.name("sweep")
    ids = _populate(b, queue, queued, running)
    settings = b.settings.model_copy(update={"lease_seconds": 3600.0, "key_concurrency": 2})
    times, floors = _time_sweeps(b, settings, queue, ids)
    base = Figure(
        name=f"one sweep, {queued} queued + {running} running runs",
        unit="s",
        value=Spread.of(times),
        floor_name="read the active and queued indexes and the queue",
        floor=Spread.of(floors),
    )
    ids |= _populate_deferred(b, queue, queued, running)
    deferred, _ = _time_sweeps(b, settings, queue, ids)
    return [
        base,
        Figure(
            name=f"one sweep, the same + {queued} deferred in a full key's list",
            unit="s",
            value=Spread.of(deferred),
            floor_name="the sweep without them",
            floor=Spread.of(times),
        ),
    ]


def _time_sweeps(
    b: Bench, settings: Any, queue: str, ids: set[str]
) -> tuple[list[float], list[float]]:
    from workers.sweeper import sweep

    sweep(b.store, b.rq, settings)  # untimed: whatever earlier sections left behind
    times, floors = [], []
    for _ in range(b.plan.sweep_rounds):
        t0 = time.perf_counter()
        report = sweep(b.store, b.rq, settings)
        times.append(time.perf_counter() - t0)
        if ids.intersection(report.requeued + report.repushed):
            raise BenchError("the bench's sweep requeued or repushed a live run of its own")
        t0 = time.perf_counter()
        pipe = b.redis.pipeline(transaction=False)
        pipe.smembers(b.keys.active)
        pipe.smembers(b.keys.queued)
        pipe.lrange(Queue(queue, connection=b.rq).key, 0, -1)
        pipe.execute()
        floors.append(time.perf_counter() - t0)
    return times, floors


def _populate_deferred(b: Bench, queue: str, deferred: int, running: int) -> set[str]:
    """Queued runs of one key, deferred in its waiting list (as workers leave them when
    the key's two slots are held: here by two live claimed runs of the key)."""
    tenant = "bench-tenant"
    k = b.keys
    first: list[Event] = [StatusEvent(status=Status.QUEUED, reason="submitted")]
    fields = {"queue": queue, "model": "scripted", "title": "bench", "key": tenant}
    ids = [new_run_id() for _ in range(deferred)]
    b.job_ids.update(ids)
    for i in range(0, len(ids), 500):
        batch = ids[i : i + 500]
        for run_id in batch:
            b.store.create(run_id, fields, first)
        pipe = b.redis.pipeline(transaction=False)
        pipe.rpush(k.tenant_waiting(tenant), *batch)
        pipe.sadd(k.deferred, *batch)
        pipe.execute()
    holders = [b.running_run()[0] for _ in range(2)]
    seconds, _ = b.redis.time()
    expiry = (int(seconds) + 3600) * 1000
    b.redis.hset(k.tenant_slots(tenant), mapping={h: f"1 {expiry}" for h in holders})
    b.redis.sadd(k.tenants, tenant)
    return set(ids)


def _populate(b: Bench, queue: str, queued: int, running: int) -> set[str]:
    """Create queued runs (with their RQ jobs) and claimed runs, in pipelined batches."""
    q = Queue(queue, connection=b.rq)
    first: list[Event] = [
        StatusEvent(status=Status.QUEUED, reason="submitted"),
        MessageEvent(role="user", content="benchmark"),
    ]
    ids = [new_run_id() for _ in range(queued + running)]
    b.job_ids.update(ids)
    fields = {"queue": queue, "model": "scripted", "title": "bench"}
    for i in range(0, len(ids), 500):
        batch = ids[i : i + 500]
        for run_id in batch:
            b.store.create(run_id, fields, first)
        jobs = [
            Queue.prepare_data(TURN_FUNC, (rid,), job_id=rid, timeout=-1, result_ttl=600)
            for n, rid in enumerate(batch, i)
            if n < queued
        ]
        if jobs:
            q.enqueue_many(jobs)
    for run_id in ids[queued:]:
        # Claimed straight through the store: RQ's queue no longer holds the job, as
        # when a worker has popped it.
        b.rq.lrem(q.key, 0, run_id)
        if b.store.claim(run_id, "bench", 3600.0) is None:
            raise BenchError(f"could not claim the bench run {run_id}")
    return set(ids)


def _wait_cost(b: Bench) -> Figure | None:
    info = b.redis.info("replication")
    if int(info.get("connected_slaves", 0)) < 1:
        return None
    rep = replication.Replication(replicas=1, timeout_ms=5000)
    tr = Transcript.start(b)
    plain, waited = [], []
    for _ in range(b.plan.wait_samples):
        plain.append(tr.commit_step())
        events = step_events(tr.steps)
        t0 = time.perf_counter()
        replication.commit(b.store, rep, tr.run_id, tr.epoch, events, tr.seen, 1)
        waited.append(time.perf_counter() - t0)
        tr.seen += len(events)
        tr.steps += 1
    return Figure(
        name="commit + WAIT 1 (RUNNER_COMMIT_REPLICAS=1)",
        unit="s",
        value=Spread.of(waited),
        floor_name="commit alone",
        floor=Spread.of(plain),
    )
