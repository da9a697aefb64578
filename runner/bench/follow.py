"""Sections 3 and 4: how soon a follower prints a commit, and how fast it reattaches."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from collections.abc import Callable

from rich.console import Console

from runner.bench.commits import Transcript
from runner.bench.context import RUNNER, Bench
from runner.bench.procs import LineReader, wait_proc
from runner.bench.stats import Figure, Spread
from runner.cli import render
from runner.client import Client
from runner.errors import BenchError
from runner.events import MessageEvent

WARMUP = 5

# The floor: the same XADD -> XREAD BLOCK -> print, with nothing of runner in between.
FLOOR_READER = """
import sys
from runner.connection import connect  # the same TLS/Sentinel client, nothing else of runner
from runner.settings import Settings
r = connect(Settings(redis_url=sys.argv[1]), decode=False)
key, last = sys.argv[2], "0-0"
print("ready", flush=True)
while True:
    for _, entries in r.xread({key: last}, block=5000) or []:
        for eid, fields in entries:
            last = eid
            if b"stop" in fields:
                sys.exit(0)
            print(eid.decode(), flush=True)
"""


def _probe(write: Callable[[int], object], reader: LineReader, n: int) -> list[float]:
    """Latencies from the start of ``write(i)`` to the reader's line, ``n`` times."""
    latencies: list[float] = []
    for i in range(WARMUP + n):
        # A pause, so the reader is back in its blocking read when the write lands.
        time.sleep(random.uniform(0.003, 0.010))
        t0 = time.perf_counter()
        write(i)
        stamp, _ = reader.next(timeout=30)
        if i >= WARMUP:
            latencies.append(stamp - t0)
    return latencies


def _follow_samples(b: Bench) -> list[float]:
    tr = Transcript.start(b)
    proc = b.spawn([*RUNNER, "follow", tr.run_id, "--json"], "follow.log", stdout=subprocess.PIPE)
    assert proc.stdout is not None
    reader = LineReader(proc.stdout)
    for _ in range(tr.seen):  # the replay of what is there already
        reader.next(timeout=30)
    probe = MessageEvent(role="assistant", content="still working on it")
    latencies = _probe(lambda _: tr.commit([probe]), reader, b.plan.follow_samples)
    tr.finish()
    if wait_proc(b, proc, 30, "follow.log") != 0:
        raise BenchError(f"runner follow failed: {b.log_tail('follow.log')}")
    return latencies


def _floor_samples(b: Bench) -> list[float]:
    key = b.scratch_key("xread")
    proc = b.spawn(
        [sys.executable, "-c", FLOOR_READER, b.url, key], "xread.log", stdout=subprocess.PIPE
    )
    assert proc.stdout is not None
    reader = LineReader(proc.stdout)
    reader.next(timeout=30)  # "ready"
    latencies = _probe(lambda i: b.redis.xadd(key, {"i": i}), reader, b.plan.follow_samples)
    b.redis.xadd(key, {"stop": 1})
    wait_proc(b, proc, 30, "xread.log")
    return latencies


def follow_latency(b: Bench) -> list[Figure]:
    """Section 3: commit -> ``runner follow --json`` printed it, against XADD -> XREAD."""
    ours = Spread.of(_follow_samples(b))
    floor = Spread.of(_floor_samples(b))
    note = (
        "commit → a `runner follow --json` process printed it, vs XADD → a bare "
        "XREAD BLOCK loop in another process printed it"
    )
    return [
        Figure("follow p50", "s", ours, "XADD → XREAD p50", floor, stat="p50", note=note),
        Figure("follow p99", "s", ours, "XADD → XREAD p99", floor, stat="p99"),
    ]


def _timed(fn: Callable[[], object], n: int) -> list[float]:
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return samples


def _follow_process(b: Bench, run_id: str) -> None:
    done = subprocess.run(
        [*RUNNER, "follow", run_id],
        env=b.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(f"runner follow exited {done.returncode}: {done.stderr.decode()[-300:]}")


def reattach(b: Bench, tr: Transcript) -> list[Figure]:
    """Section 4: replay and render a long transcript, against a bare XRANGE of it."""
    key = b.keys.events(tr.run_id)
    client = Client(b.settings)
    with open(os.devnull, "w") as null:
        console = Console(file=null, highlight=False, soft_wrap=True)

        def in_process() -> None:
            for event in client.follow(tr.run_id):
                render.event(console, event)

        inproc = _timed(in_process, b.plan.reattach_runs)
    replay = _timed(lambda: list(client.follow(tr.run_id)), b.plan.reattach_runs)
    floor = Spread.of(_timed(lambda: b.redis.xrange(key), b.plan.xrange_runs))
    process = _timed(lambda: _follow_process(b, tr.run_id), b.plan.reattach_runs)
    what = f"{tr.steps:,} steps, {tr.seen:,} events, rendered to /dev/null"
    return [
        Figure("`runner follow` process", "s", Spread.of(process), "XRANGE", floor, note=what),
        Figure("in-process follow + render", "s", Spread.of(inproc), "XRANGE", floor),
        Figure("in-process follow, no render", "s", Spread.of(replay), "XRANGE", floor),
    ]
