"""Sections 1 and 2: what one commit costs, and whether that grows with the transcript."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

from runner.bench.context import Bench
from runner.bench.stats import Figure, Spread
from runner.events import Event, MessageEvent, Status, ToolCallOut, encode

WARMUP = 20
ASSISTANT = (
    "The failing test imports the fixture before the database is up; I'll read the "
    "fixture and the conftest to see where the connection is made."
)
TOOL_OUTPUT = "\n".join(
    [
        "============================= test session starts ==============================",
        "collected 48 items",
        "",
        "tests/test_db.py::test_connect PASSED                                     [  2%]",
        "tests/test_db.py::test_migrate FAILED                                     [  4%]",
        "",
        "=================================== FAILURES ===================================",
        "E   sqlalchemy.exc.OperationalError: connection refused (localhost:5432)",
        "========================= 1 failed, 47 passed in 3.21s =========================",
    ]
)


def step_events(i: int) -> list[Event]:
    """Step ``i`` of a realistic turn: an assistant tool call, then the tool's result."""
    if i % 2 == 0:
        call = ToolCallOut(id=f"call_{i}", name="shell", arguments={"command": "pytest -x -q"})
        return [MessageEvent(role="assistant", content=ASSISTANT, tool_calls=[call])]
    return [
        MessageEvent(role="tool", content=TOOL_OUTPUT, tool_call_id=f"call_{i - 1}", name="shell")
    ]


def payload_bytes(events: Sequence[Event]) -> int:
    """The events' own size: their JSON, as stored in the stream's ``data`` field."""
    return sum(len(encode(e)[1].encode()) for e in events)


@dataclass
class Transcript:
    """A run held by the bench itself, committed to through the real store path."""

    b: Bench
    run_id: str
    epoch: int
    seen: int = 3  # queued, the user's message, running
    steps: int = 0
    payload: int = 0
    memory: list[tuple[int, int, int]] = field(default_factory=list)  # steps, bytes, payload

    @classmethod
    def start(cls, b: Bench) -> Transcript:
        run_id, epoch = b.running_run()
        return cls(b, run_id, epoch)

    def commit(self, events: Sequence[Event], blobs: dict[str, bytes] | None = None) -> float:
        """Commit ``events`` as one step; returns how long the commit took."""
        t0 = time.perf_counter()
        self.b.store.commit(self.run_id, self.epoch, events, self.seen, steps=1, blobs=blobs)
        took = time.perf_counter() - t0
        self.seen += len(events)
        self.steps += 1
        self.payload += payload_bytes(events)
        return took

    def commit_step(self) -> float:
        return self.commit(step_events(self.steps))

    def note_memory(self) -> None:
        """Record the stream's size in Redis now (outside any timed section)."""
        self.memory.append((self.steps, stream_bytes(self.b, self.run_id), self.payload))

    def finish(self) -> None:
        self.b.store.finish(self.run_id, self.epoch, Status.SUCCEEDED, "bench", "final answer")
        self.seen += 1


def stream_bytes(b: Bench, run_id: str) -> int:
    """Bytes the run's stream takes in Redis (MEMORY USAGE, or the server's total)."""
    try:
        return int(b.redis.memory_usage(b.keys.events(run_id), samples=0) or 0)
    except redis.ResponseError:
        return int(b.redis.info("memory")["used_memory"])


def interleaved(b: Bench, tr: Transcript, n: int) -> tuple[list[float], list[float]]:
    """``n`` pairs of one bare PING and one commit on the same connection."""
    pings: list[float] = []
    commits: list[float] = []
    for _ in range(n):
        t0 = time.perf_counter()
        b.redis.ping()
        pings.append(time.perf_counter() - t0)
        commits.append(tr.commit_step())
    return pings, commits


def _command_usec(b: Bench) -> dict[str, tuple[int, int]]:
    """Server-wide (calls, µs) of EVALSHA and PING so far; empty if the server won't say."""
    try:
        stats: dict[str, Any] = b.redis.info("commandstats")
    except redis.ResponseError:
        return {}
    return {
        name: (int(v.get("calls", 0)), int(v.get("usec", 0)))
        for name in ("evalsha", "ping")
        if isinstance(v := stats.get(f"cmdstat_{name}"), dict)
    }


def _server_side(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> str:
    parts = []
    for name in ("evalsha", "ping"):
        if name in before and name in after and after[name][0] > before[name][0]:
            calls = after[name][0] - before[name][0]
            parts.append(f"{name.upper()} {(after[name][1] - before[name][1]) / calls:.1f} µs")
    return f"time inside the server per call: {', '.join(parts)}" if parts else ""


def commit_cost(b: Bench) -> list[Figure]:
    """Section 1: one step through RunStore.commit against one bare PING."""
    tr = Transcript.start(b)
    interleaved(b, tr, WARMUP)
    before = _command_usec(b)
    pings, commits = interleaved(b, tr, b.plan.commit_samples)
    after = _command_usec(b)
    tr.finish()
    return [
        Figure(
            "commit one step",
            "s",
            Spread.of(commits),
            "PING",
            Spread.of(pings),
            goal="< 2",
            note="RunStore.commit (one EVALSHA) vs a bare PING on the same connection; "
            + _server_side(before, after),
        )
    ]


def growth(b: Bench) -> tuple[list[Figure], Transcript]:
    """Section 2: per-step commit cost at each transcript size of the plan.

    One transcript per size, filled first; then the samples go round robin (a PING,
    then one commit to each transcript), so a burst of load on a shared machine falls
    on every size alike. Returns the figures and the longest transcript, finished.
    """
    sizes = b.plan.growth_sizes
    runs = [Transcript.start(b) for _ in sizes]
    for tr, size in zip(runs, sizes, strict=True):
        b.progress(f"  filling a transcript to {size:,} steps")
        _fill(tr, size, note=tr is runs[-1])
    pings: list[float] = []
    costs: list[list[float]] = [[] for _ in sizes]
    for i in range(WARMUP + b.plan.growth_window):
        t0 = time.perf_counter()
        b.redis.ping()
        ping = time.perf_counter() - t0
        took = [tr.commit_step() for tr in runs]
        if i >= WARMUP:
            pings.append(ping)
            for samples, t in zip(costs, took, strict=True):
                samples.append(t)
    runs[-1].note_memory()
    for tr in runs:
        tr.finish()
    spreads = [Spread.of(c) for c in costs]
    return _growth_figures(sizes, spreads, Spread.of(pings), b.plan.growth_window), runs[-1]


def _growth_figures(
    sizes: Sequence[int], by_size: list[Spread], ping: Spread, window: int
) -> list[Figure]:
    figures = [
        Figure(f"commit at {size:,} steps", "s", spread, "PING", ping)
        for size, spread in zip(sizes, by_size, strict=True)
    ]
    figures.append(
        Figure(
            f"commit at {sizes[-1]:,} / at {sizes[0]:,}",
            "s",
            by_size[-1],
            f"commit at {sizes[0]:,}",
            by_size[0],
            goal="≈ 1",
            note=f"one transcript per size, then {WARMUP} + {window} commits to each, "
            "round robin with a PING between",
        )
    )
    return figures


def _fill(tr: Transcript, size: int, note: bool) -> None:
    every = tr.b.plan.memory_every
    if note:
        tr.note_memory()
    while tr.steps < size:
        tr.commit_step()
        if note and tr.steps % every == 0:
            tr.note_memory()
