"""Section 9: live output. How soon a streamed chunk is printed, and what it costs Redis.

The chunk goes through the worker's own :class:`runner.deltas.DeltaWriter` (in this
process, as in a worker) to a ``runner follow --json`` process, against the bare
XADD → XREAD BLOCK → print floor of section 3 on the same server. Two cases: a chunk
after a quiet spell (the writer sends it at once) and a steady stream of chunks every
20 ms (merged into one write per flush interval, so each waits for its write). Writes
are the writer's round trips for a 2,000-token answer.
"""

from __future__ import annotations

import json
import random
import subprocess
import time

from runner.bench.commits import Transcript
from runner.bench.context import RUNNER, Bench
from runner.bench.follow import WARMUP, _floor_samples
from runner.bench.procs import LineReader, wait_proc
from runner.bench.stats import Figure, Spread
from runner.deltas import DeltaWriter
from runner.errors import BenchError

TOKENS = 2000
STREAM_SECONDS = 0.02  # chunk spacing of the steady stream
PACED_RATE = 500.0  # tokens/s of the paced 2,000-token answer: a fast model


def _writer(b: Bench, tr: Transcript) -> DeltaWriter:
    s = b.settings
    writer = DeltaWriter(
        b.redis,
        b.keys.deltas(tr.run_id),
        tr.epoch,
        flush_seconds=s.delta_flush_ms / 1000,
        maxlen=s.delta_maxlen,
        ttl_seconds=s.delta_ttl_seconds,
    )
    writer.begin(b.store.tail(tr.run_id, 1)[-1].id)
    return writer


def _texts(reader: LineReader, timeout: float = 30) -> tuple[float, str]:
    """The next delta text the follower printed, and when."""
    while True:
        stamp, line = reader.next(timeout)
        event = json.loads(line)
        if event.get("type") == "delta":
            return stamp, str(event.get("text", ""))


def _samples(b: Bench) -> tuple[list[float], list[float]]:
    tr = Transcript.start(b)
    proc = b.spawn([*RUNNER, "follow", tr.run_id, "--json"], "live.log", stdout=subprocess.PIPE)
    assert proc.stdout is not None
    reader = LineReader(proc.stdout)
    for _ in range(tr.seen):  # the replay of what is there already
        reader.next(timeout=30)
    writer = _writer(b, tr)
    flush = writer.flush_seconds
    quiet: list[float] = []
    for i in range(WARMUP + b.plan.follow_samples):
        time.sleep(flush + random.uniform(0.01, 0.03))  # quiet for longer than a flush
        t0 = time.perf_counter()
        writer.text(f"q{i} ")
        stamp, _ = _texts(reader)
        if i >= WARMUP:
            quiet.append(stamp - t0)
    sent: dict[str, float] = {}
    for i in range(b.plan.follow_samples):
        sent[f"s{i}"] = time.perf_counter()
        writer.text(f"s{i} ")
        time.sleep(STREAM_SECONDS)
    steady: list[float] = []
    while len(steady) < len(sent):
        stamp, text = _texts(reader)
        steady += [stamp - sent[word] for word in text.split() if word in sent]
    writer.close()
    tr.finish()
    if wait_proc(b, proc, 30, "live.log") != 0:
        raise BenchError(f"runner follow failed: {b.log_tail('live.log')}")
    return quiet, steady


def _writes(b: Bench, rate: float | None) -> int:
    """Round trips the writer makes for a 2,000-token answer (``rate`` None: at once)."""
    tr = Transcript.start(b)
    writer = _writer(b, tr)
    started = time.perf_counter()
    for i in range(TOKENS):
        writer.text("tok ")
        if rate is not None:
            ahead = started + (i + 1) / rate - time.perf_counter()
            if ahead > 0:
                time.sleep(ahead)
    deadline = time.monotonic() + 10
    while writer._pending and time.monotonic() < deadline:
        time.sleep(0.01)
    writer.close()
    tr.finish()
    return writer.writes


def live_output(b: Bench) -> list[Figure]:
    """Section 9: chunk → printed by a follower, and Redis writes per streamed answer."""
    quiet, steady = _samples(b)
    floor = Spread.of(_floor_samples(b))
    xread = "XADD → XREAD p50"
    flush_ms = b.settings.delta_flush_ms
    note = (
        "model chunk handed to the worker's delta writer → printed by `runner follow "
        f"--json` in another process; a chunk every {STREAM_SECONDS * 1000:.0f} ms is "
        f"merged into one write per {flush_ms} ms"
    )
    burst, paced = _writes(b, None), _writes(b, PACED_RATE)
    per_token = Spread.of([float(TOKENS)])
    return [
        Figure(
            "delta after a quiet spell p50",
            "s",
            Spread.of(quiet),
            xread,
            floor,
            goal="ratio ≤ 2",
            note=note,
        ),
        Figure("delta in a steady stream p50", "s", Spread.of(steady), xread, floor),
        Figure(
            f"writes: {TOKENS:,} tokens at once",
            "writes",
            Spread.of([float(burst)]),
            "one per token",
            per_token,
            goal="≤ 50",
        ),
        Figure(
            f"writes: {TOKENS:,} tokens at {PACED_RATE:.0f}/s",
            "writes",
            Spread.of([float(paced)]),
            "one per token",
            per_token,
            goal="≤ 50",
            note=f"one write per {flush_ms} ms at most (RUNNER_DELTA_FLUSH_MS)",
        ),
    ]
