"""Runs the bench's sections in order and gathers their figures."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from importlib.util import find_spec

from runner.bench.commits import Transcript, commit_cost, growth
from runner.bench.compaction import compaction_turn
from runner.bench.context import Bench, Plan
from runner.bench.fleet import fleet
from runner.bench.follow import follow_latency
from runner.bench.live import live_output
from runner.bench.memory import stream_memory, worker_rss
from runner.bench.reattach import reattach
from runner.bench.recovery import recovery
from runner.bench.report import Report, describe
from runner.bench.sse import sse_latency
from runner.bench.stats import Figure
from runner.bench.throughput import throughput
from runner.bench.workspace import workspace_costs
from runner.errors import BadInput
from runner.settings import Settings

# The sections, in the order they run; ``runner bench --section`` picks some.
SECTIONS = (
    "commit",
    "growth",
    "follow",
    "reattach",
    "throughput",
    "recovery",
    "memory",
    "workspace",
    "fleet",
    "live",
    "compaction",
    "sse",
)
NEEDS_GROWTH = ("reattach", "memory")  # they read the transcript that ``growth`` writes


def run_bench(
    settings: Settings,
    quick: bool,
    progress: Callable[[str], None],
    only: Sequence[str] = (),
) -> Report:
    """Measure on the configured server (``only`` these sections, if given; a section
    that reads ``growth``'s transcript brings ``growth`` along); leaves nothing behind."""
    unknown = sorted(set(only) - set(SECTIONS))
    if unknown:
        raise BadInput(f"no such bench section: {unknown[0]!r} (one of {', '.join(SECTIONS)})")
    if "sse" in only and find_spec("sse_starlette") is None:
        raise BadInput("the sse section needs the serve extra: pip install 'runner[serve]'")
    wanted = set(only or SECTIONS)
    if wanted & set(NEEDS_GROWTH):
        wanted.add("growth")
    started = time.monotonic()
    load = os.getloadavg()  # a shared machine's other work shows in every figure
    b = Bench(settings, Plan.make(quick), progress)
    try:
        progress(f"bench on {b.url} under prefix {b.token!r}")
        sections = _sections(b, wanted)
        machine = describe(b.redis, b.url, embedded=settings.redis_url is None)
        machine["load_average"] = [round(x, 2) for x in load]
    finally:
        b.close()
    s = b.settings
    return Report(
        quick=quick,
        machine=machine,
        settings={
            "lease_seconds": s.lease_seconds,
            "sweep_seconds": s.sweep_seconds,
            "shutdown_grace": s.shutdown_grace,
            "workers": b.plan.workers,
            "prefix": b.token,
        },
        sections=sections,
        seconds=time.monotonic() - started,
    )


def _sections(b: Bench, wanted: set[str]) -> dict[str, list[Figure]]:
    out: dict[str, list[Figure]] = {}
    grown: list[Transcript] = []

    def grow() -> list[Figure]:
        figures, transcript = growth(b)
        grown.append(transcript)
        return figures

    steps: list[tuple[str, str, Callable[[], list[Figure]]]] = [
        ("commit", "commit cost vs PING", lambda: commit_cost(b)),
        ("growth", "commit cost as the transcript grows", grow),
        ("follow", "follow latency vs XADD → XREAD", lambda: follow_latency(b)),
        ("reattach", "reattach: follow a long finished run", lambda: reattach(b, grown[0])),
        ("throughput", "turn throughput vs no-op jobs", lambda: throughput(b)),
        ("recovery", "recovery: handoff and crash", lambda: recovery(b)),
        ("memory", "memory", lambda: [stream_memory(grown[0]), *worker_rss(b)]),
        ("workspace", "workspace checkpoints and restore", lambda: workspace_costs(b)),
        ("fleet", "fleet: 8 turn processes, the sweeper, WAIT", lambda: fleet(b)),
        ("live", "live output: delta latency and writes", lambda: live_output(b)),
        ("compaction", "a 500-step turn on a 4k window", lambda: compaction_turn(b)),
    ]
    if find_spec("sse_starlette") is not None:  # issue 15: needs the serve extra
        steps.append(("sse", "SSE latency and 100 followers", lambda: sse_latency(b)))
    steps = [step for step in steps if step[0] in wanted]
    for i, (key, title, run) in enumerate(steps, 1):
        b.progress(f"[{i}/{len(steps)}] {title}")
        t0 = time.monotonic()
        out[key] = run()
        b.progress(f"      {time.monotonic() - t0:.1f}s")
    return out
