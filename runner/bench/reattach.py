"""Section 4: reattaching to a long finished run, each reader a whole process.

``runner follow ID`` (human, piped) and ``runner follow ID --json`` against a bare
process that XRANGEs the same stream, decodes each event's JSON and prints a line per
event: the floor is reading the data, and the goal is 2x it (issue 12). The three are
run in turn, round after round, so the machine's load falls on all of them alike.
Each is timed twice: wall clock, and the CPU the process used (user + system), which a
loaded machine inflates far less.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import time

from runner.bench.commits import Transcript
from runner.bench.context import RUNNER, Bench
from runner.bench.stats import Figure, Spread
from runner.errors import BenchError

REPLAY_FLOOR = """
import json, sys, redis
r = redis.Redis.from_url(sys.argv[1], decode_responses=True)
out = sys.stdout
for eid, fields in r.xrange(sys.argv[2]):
    data = json.loads(fields["data"])
    out.write(f"{eid} {fields['type']} {len(data)}\\n")
"""


def _cpu() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def _whole_process(b: Bench, args: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds of ``args`` from start to exit, its stdout a pipe read to the end."""
    cpu = _cpu()
    t0 = time.perf_counter()
    done = subprocess.run(
        args,
        env=b.env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=600,
        check=False,
    )
    took = time.perf_counter() - t0
    if done.returncode != 0 or not done.stdout:
        tail = done.stderr.decode(errors="replace")[-300:]
        raise BenchError(f"{' '.join(args[-3:])} exited {done.returncode}: {tail}")
    return took, _cpu() - cpu


def reattach(b: Bench, tr: Transcript) -> list[Figure]:
    """Replay ``tr`` (finished) as a human in a pipe and as ``--json``, vs the bare read."""
    key = b.keys.events(tr.run_id)
    commands = {
        "floor": [sys.executable, "-c", REPLAY_FLOOR, b.url, key],
        "human": [*RUNNER, "follow", tr.run_id],
        "json": [*RUNNER, "follow", tr.run_id, "--json"],
    }
    samples: dict[str, list[float]] = {name: [] for name in commands}
    cpu: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(b.plan.reattach_runs):
        for name, args in commands.items():
            wall, used = _whole_process(b, args)
            samples[name].append(wall)
            cpu[name].append(used)
    floor, cpu_floor = Spread.of(samples["floor"]), Spread.of(cpu["floor"])
    what = (
        f"{tr.steps:,} steps ({tr.seen:,} events), each a whole process with stdout a pipe; "
        "floor: a bare process that XRANGEs the stream, json-decodes each event, prints a line"
    )
    bare = "bare XRANGE + decode + print"
    return [
        Figure(
            "`runner follow` piped",
            "s",
            Spread.of(samples["human"]),
            bare,
            floor,
            goal="ratio ≤ 2",
            note=what,
        ),
        Figure(
            "`runner follow --json`", "s", Spread.of(samples["json"]), bare, floor, goal="ratio ≤ 2"
        ),
        Figure("`runner follow` piped, CPU", "s", Spread.of(cpu["human"]), bare, cpu_floor),
        Figure("`runner follow --json`, CPU", "s", Spread.of(cpu["json"]), bare, cpu_floor),
    ]
