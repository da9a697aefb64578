"""Section 4: reattaching to a long finished run, each reader a whole process.

``runner follow ID`` (human, piped) and ``runner follow ID --json`` against a bare
process that XRANGEs the same stream, decodes each event's JSON and prints a line per
event: the floor is reading the data, and the goal is 2x it (issue 12). The three are
run in turn, round after round, so the machine's load falls on all of them alike.
Each is timed twice: wall clock, and the CPU the process used (user + system), which a
loaded machine inflates far less.

On a terminal (a pty whose other end this process drains), ``runner follow`` draws
with rich; the issue allows it what the terminal itself costs on top of the goal. That
cost is measured as a bare ``cat`` writing the same bytes to the same kind of pty, and
taken off: (terminal follow - terminal cat) / floor, with the same goal of 2.
"""

from __future__ import annotations

import fcntl
import os
import pty
import resource
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

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


def _on_terminal(b: Bench, args: list[str]) -> tuple[float, bytes]:
    """Wall seconds of ``args`` with stdout a 120x40 pty drained to the end, and what it drew."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    env = {k: v for k, v in b.env.items() if k not in ("NO_COLOR", "COLUMNS")}
    env["TERM"] = "xterm-256color"  # colours and styles, as a person's terminal has them
    chunks: list[bytes] = []
    t0 = time.perf_counter()
    with subprocess.Popen(
        args, env=env, stdin=subprocess.DEVNULL, stdout=follower, stderr=subprocess.DEVNULL
    ) as proc:
        os.close(follower)
        while True:
            try:
                data = os.read(leader, 1 << 16)
            except OSError:  # EIO: the last writer closed its end
                break
            if not data:
                break
            chunks.append(data)
        code = proc.wait(timeout=600)
    took = time.perf_counter() - t0
    os.close(leader)
    if code != 0:
        raise BenchError(f"{' '.join(args[-3:])} on a terminal exited {code}")
    return took, b"".join(chunks)


def _terminal(b: Bench, tr: Transcript) -> tuple[list[float], list[float], int]:
    """``runner follow`` on a terminal, and ``cat`` of what it drew to a terminal, in turn."""
    drawn = Path(b.tmp / "terminal-replay.out")
    follow, bare = [], []
    size = 0
    for _ in range(b.plan.reattach_runs):
        took, out = _on_terminal(b, [*RUNNER, "follow", tr.run_id])
        follow.append(took)
        drawn.write_bytes(out)
        size = len(out)
        bare.append(_on_terminal(b, ["cat", str(drawn)])[0])
    return follow, bare, size


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
    on_tty, cat, drawn = _terminal(b, tr)
    beyond = [max(t - c, 0.0) for t, c in zip(on_tty, cat, strict=True)]
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
        Figure(
            "`runner follow` on a terminal, less the terminal",
            "s",
            Spread.of(beyond),
            bare,
            floor,
            goal="ratio ≤ 2",
            note=f"a 120x40 pty drained by the bench; less `cat` of the same {drawn:,} bytes "
            f"to a pty (median {Spread.of(cat).median:.3f} s; follow there "
            f"{Spread.of(on_tty).median:.3f} s)",
        ),
    ]
