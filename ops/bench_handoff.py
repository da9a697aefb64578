"""Handoff latency: SIGTERM to the worker running a turn, until the other worker resumes it.

Starts its own Valkey (runner's embedded server: a temporary data directory, a port the
kernel picks) and two ``runner worker`` subprocesses. Each run submits a scripted turn,
waits until it is in the middle of a step (the model thinking) on one worker, sends that
worker SIGTERM, and reads the run's stream once the turn has ended:

- resume: signal -> the first event the other worker commits after the handoff status
  event (its ``running`` status, written as it claims the run). The headline number.
- handoff: signal -> the ``queued``/``handoff`` status event of the stopped worker.
- first step: signal -> the first transcript message of the new attempt; it includes the
  model's think time for the step that was interrupted and is done again.
- exit: signal -> the stopped worker's process exit.

Event times are the millisecond part of their stream ids (the Redis server's clock); the
signal time is this process's ``time.time()``. Both are the wall clock of this one host,
so they compare directly, at millisecond resolution. Every transcript is checked too.

    .venv/bin/python ops/bench_handoff.py --runs 20 [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.bench.procs import wait_until as wait_for
from runner.client import Client, Submission
from runner.embedded import ensure_server, stop_server
from runner.events import MessageEvent, Status, StatusEvent
from runner.settings import Settings

QUEUE = "bench"
METRICS = ("resume", "handoff", "first_step", "exit")
CLOCKS = (
    "event times are stream ids (the Redis server's clock), the signal time is time.time() "
    "here: the same host's wall clock, so they compare directly, at ms resolution"
)


@dataclass
class Sample:
    """One handoff, in milliseconds from the signal."""

    resume: float
    handoff: float
    first_step: float
    exit: float


@dataclass
class Bench:
    """The server, the two workers and the client of one benchmark."""

    root: Path
    env: dict[str, str]
    client: Client
    workers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    started: int = 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="handoffs to measure (default 20)")
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object")
    parser.add_argument(
        "--think", type=float, default=0.3, help="model think time per step, s (default 0.3)"
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=20.0,
        help="RUNNER_SHUTDOWN_GRACE for the workers, s (default 20, the product default)",
    )
    args = parser.parse_args(argv)
    if args.runs < 1 or args.think <= 0 or args.grace <= 0:
        parser.error("--runs, --think and --grace must be positive")
    return args


def script(think: float) -> list[dict[str, Any]]:
    """Three tool steps and a final answer, each after ``think`` seconds of thought."""
    steps: list[dict[str, Any]] = [
        {"content": f"step {i}", "tool": "shell", "args": {"command": f"echo {i}"}, "sleep": think}
        for i in range(3)
    ]
    steps.append({"content": "All done.", "sleep": think})
    return steps


# ---------------------------------------------------------------------------- setup


def start(root: Path, grace: float) -> Bench:
    """The embedded server in ``root`` and a client on it."""
    data = root / "data"
    url = ensure_server(data)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNNER_")}
    env.update(
        RUNNER_REDIS_URL=url,
        RUNNER_DATA_DIR=str(data),
        RUNNER_WORKSPACE_ROOT=str(root / "workspaces"),
        RUNNER_SHUTDOWN_GRACE=str(grace),
        RUNNER_QUEUE=QUEUE,
    )
    settings = Settings(
        redis_url=url, queue=QUEUE, shutdown_grace=grace, workspace_root=root / "workspaces"
    )
    return Bench(root, env, Client(settings))


def add_worker(bench: Bench) -> None:
    """Start one more ``runner worker`` and wait until it listens on the queue."""
    name = f"bench-{bench.started}"
    bench.started += 1
    with open(bench.root / f"{name}.log", "wb") as log:
        bench.workers[name] = subprocess.Popen(
            [sys.executable, "-m", "runner", "worker", "--queue", QUEUE, "--name", name],
            env=bench.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    wait_for(
        lambda: bench.client.workers_serving(QUEUE) == len(bench.workers), 30, f"{name} to start"
    )


def stop(bench: Bench, keep: bool) -> None:
    """Kill what is left of the workers, stop the server; remove the directory unless kept."""
    for proc in bench.workers.values():
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    data = bench.root / "data"
    if stop_server(data):
        # The server removes its pid file last as it shuts down.
        with contextlib.suppress(RuntimeError):
            wait_for(lambda: not (data / "valkey.pid").exists(), 10, "the server to stop")
    if not keep:
        shutil.rmtree(bench.root, ignore_errors=True)


# ---------------------------------------------------------------------------- one run


def one_handoff(bench: Bench, steps: list[dict[str, Any]], think: float, grace: float) -> Sample:
    """Submit a turn, SIGTERM its worker mid-step, and measure the handoff from the stream."""
    client = bench.client
    run_id = client.submit(
        Submission(
            prompt="bench a handoff",
            model="scripted",
            queue=QUEUE,
            max_steps=len(steps) + 1,
            script=json.dumps({"steps": steps}),
        )
    )
    # Step 0 committed (its answer and its result): the model now thinks about step 1.
    record = wait_for(
        lambda: (r := client.get(run_id)).status is Status.RUNNING and r.steps >= 2 and r,
        30,
        f"run {run_id} to reach step 1",
    )
    time.sleep(think / 3)  # into the thought: the signal lands mid-step
    proc = bench.workers.pop(record.worker)
    signalled_at = time.time()
    signalled_mono = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=grace + 10)
    exit_ms = (time.monotonic() - signalled_mono) * 1000
    if code != 0:
        raise RuntimeError(f"worker {record.worker} exited {code}")
    add_worker(bench)  # back to two, while the turn goes on on the other one
    wait_for(lambda: client.get(run_id).terminal, 60, f"run {run_id} to end")
    events = client.store.events(run_id)
    check(run_id, client.get(run_id).status, events, steps)
    return measure(events, signalled_at, exit_ms)


def measure(events: list[Any], signalled_at: float, exit_ms: float) -> Sample:
    """Read the handoff's times off the stream."""
    at = next(
        i
        for i, e in enumerate(events)
        if isinstance(e, StatusEvent) and e.status is Status.QUEUED and e.reason == "handoff"
    )
    handoff = events[at]
    later = [e for e in events[at + 1 :] if e.epoch > handoff.epoch]
    first_message = next(e for e in later if isinstance(e, MessageEvent))

    def ms(event: Any) -> float:
        return int(event.id.split("-", 1)[0]) - signalled_at * 1000

    return Sample(ms(later[0]), ms(handoff), ms(first_message), exit_ms)


def check(run_id: str, status: Status, events: list[Any], steps: list[dict[str, Any]]) -> None:
    """The turn succeeded with every scripted step exactly once."""
    said = [e.content for e in events if isinstance(e, MessageEvent) and e.role == "assistant"]
    answered = [e.tool_call_id for e in events if isinstance(e, MessageEvent) and e.role == "tool"]
    want = [s["content"] for s in steps]
    if (
        status is not Status.SUCCEEDED
        or said != want
        or answered != [f"call_{i}" for i in range(3)]
    ):
        raise RuntimeError(f"run {run_id}: bad transcript ({status.value}): {said} {answered}")


# ---------------------------------------------------------------------------- report


def summary(values: list[float]) -> dict[str, float]:
    p90 = (
        statistics.quantiles(values, n=10, method="inclusive")[8] if len(values) > 1 else values[0]
    )
    return {
        "median": round(statistics.median(values), 1),
        "p90": round(p90, 1),
        "min": round(min(values), 1),
        "max": round(max(values), 1),
    }


def report(samples: list[Sample], settings: dict[str, Any], as_json: bool) -> None:
    stats = {m: summary([getattr(s, m) for s in samples]) for m in METRICS}
    if as_json:
        print(json.dumps({"settings": settings, "ms": stats, "clocks": CLOCKS}, indent=2))
        return
    labels = {
        "resume": "signal -> resumed on the other worker",
        "handoff": "signal -> handoff committed",
        "first_step": f"signal -> first step there (incl. {settings['think_s']:g} s think)",
        "exit": "signal -> stopped worker exited",
    }
    print(f"handoff latency over {len(samples)} runs, ms")
    print(f"{'':52}{'median':>8}{'p90':>8}{'min':>8}{'max':>8}")
    for metric in METRICS:
        row = stats[metric]
        cells = "".join(f"{row[k]:>8.1f}" for k in ("median", "p90", "min", "max"))
        print(f"{labels[metric]:52}{cells}")
    print("settings: " + ", ".join(f"{k}={v}" for k, v in settings.items()))
    print(f"clocks: {CLOCKS}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    steps = script(args.think)
    bench = start(Path(tempfile.mkdtemp(prefix="runner-bench-")), args.grace)
    samples = []
    failed = True
    try:
        add_worker(bench)
        add_worker(bench)
        for i in range(args.runs):
            samples.append(one_handoff(bench, steps, args.think, args.grace))
            if not args.json:
                print(f"run {i + 1}/{args.runs}: resume {samples[-1].resume:.0f} ms", flush=True)
        failed = False
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        print(f"error: {exc} (logs in {bench.root})", file=sys.stderr)
        return 1
    finally:
        url = bench.env["RUNNER_REDIS_URL"]
        stop(bench, keep=failed)
    settings = {
        "runs": args.runs,
        "workers": 2,
        "think_s": args.think,
        "steps": f"{len(steps) - 1} tool steps + final answer",
        "signal": "SIGTERM to the worker PID, mid-thought of step 1",
        "shutdown_grace_s": args.grace,
        "lease_s": bench.client.settings.lease_seconds,
        "server": f"embedded valkey at {url}",
    }
    report(samples, settings, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
