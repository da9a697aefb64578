"""A soak: many turns on a pool of workers under random chaos, every transcript checked.

Used by ``ops/soak.py`` and ``tests/e2e/test_soak.py``.

- :class:`WorkerPool` keeps N worker processes alive, replacing the ones that die.
- :class:`Monkey` does random harm to the pool's workers (SIGTERM, SIGKILL of a worker,
  its group or its work horse, SIGSTOP then SIGCONT).
- :func:`soak` puts it together: submit turns, unleash the monkey, wait, check each run
  with :func:`runner.bench.checker.transcript_problems`.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rq.queue import Queue

from runner.bench.checker import INTERRUPTED, running_events, transcript_problems
from runner.bench.context import RUNNER
from runner.bench.procs import Proc, children, start
from runner.client import Client, Submission
from runner.events import TERMINAL, MessageEvent, Status
from runner.settings import Settings

# ------------------------------------------------------------------------------- pool


class WorkerPool:
    """Keeps ``size`` workers running; a dead one is replaced under a fresh name."""

    def __init__(
        self, env: dict[str, str], log_dir: Path, size: int, queue: str = "default"
    ) -> None:
        self.env = env
        self.log_dir = log_dir
        self.size = size
        self.queue = queue
        self.live: list[Proc] = []
        self.dead: list[Proc] = []
        self.started = 0

    def spawn(self) -> Proc:
        """Start one more worker (it registers with RQ in about a second)."""
        self.started += 1
        name = f"soak-{self.started}"
        args = [*RUNNER, "worker", "--queue", self.queue, "--name", name]
        proc = start(args, self.env, self.log_dir / f"worker-{name}.log")
        proc.name = name
        self.live.append(proc)
        return proc

    def replace_dead(self) -> int:
        """Reap the workers that exited and start new ones; returns how many."""
        gone = [p for p in self.live if not p.alive()]
        for proc in gone:
            self.live.remove(proc)
            self.dead.append(proc)
        for _ in range(self.size - len(self.live)):
            self.spawn()
        return len(gone)

    def stop(self, timeout: float = 15.0) -> None:
        """Wake, then SIGTERM every worker; SIGKILL the ones still there after ``timeout``."""
        for proc in self.live:
            _signal_all(proc, signal.SIGCONT)
            with contextlib.suppress(ProcessLookupError):
                proc.signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in self.live:
            with contextlib.suppress(Exception):
                proc.wait(max(deadline - time.monotonic(), 0.1))
            proc.stop()
        self.dead.extend(self.live)
        self.live = []

    def logs(self) -> dict[str, str]:
        """Every worker's log by name."""
        return {p.name: p.output() for p in [*self.dead, *self.live]}


def _signal_all(proc: Proc, sig: int) -> None:
    """Signal a worker's process group and its work horse's (RQ gives the horse its own)."""
    for pid in [proc.pid, *children(proc.pid)]:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)


# ----------------------------------------------------------------------------- monkey

ACTIONS = ("term", "kill", "kill_group", "kill_horse", "freeze")


@dataclass
class Monkey:
    """Random harm to a pool's workers, one action per :meth:`step`."""

    pool: WorkerPool
    rng: random.Random
    max_freeze: float = 3.5
    frozen: dict[int, tuple[Proc, float]] = field(default_factory=dict)  # pid -> (proc, thaw at)
    done: list[str] = field(default_factory=list)

    def step(self) -> str | None:
        """Do one random action to a random (preferably busy) worker; returns what it did."""
        self.thaw()
        candidates = [p for p in self.pool.live if p.alive() and p.pid not in self.frozen]
        busy = [p for p in candidates if children(p.pid)]
        if not candidates:
            return None
        proc = self.rng.choice(busy if busy and self.rng.random() < 0.8 else candidates)
        action = self.rng.choice(ACTIONS)
        self._do(action, proc)
        what = f"{action} {proc.name}"
        self.done.append(what)
        return what

    def _do(self, action: str, proc: Proc) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if action == "term":
                proc.signal(signal.SIGTERM)
            elif action == "kill":
                proc.signal(signal.SIGKILL)
            elif action == "kill_group":
                proc.signal_group(signal.SIGKILL)
            elif action == "kill_horse":
                for pid in children(proc.pid):
                    os.kill(pid, signal.SIGKILL)
            elif action == "freeze":
                _signal_all(proc, signal.SIGSTOP)
                thaw_at = time.monotonic() + self.rng.uniform(0.2, self.max_freeze)
                self.frozen[proc.pid] = (proc, thaw_at)

    def thaw(self, everything: bool = False) -> None:
        """SIGCONT the frozen workers whose time is up (or all of them)."""
        now = time.monotonic()
        for pid, (proc, at) in list(self.frozen.items()):
            if everything or now >= at:
                _signal_all(proc, signal.SIGCONT)
                del self.frozen[pid]


# ------------------------------------------------------------------------------- soak


def soak_script(rng: random.Random, steps: int) -> list[dict[str, Any]]:
    """``steps`` shell steps with random thinking times, then a final answer."""
    out: list[dict[str, Any]] = [
        {
            "content": f"step {i}",
            "tool": "shell",
            "args": {"command": f"echo out-{i}"},
            "sleep": round(rng.uniform(0.1, 0.6), 2),
        }
        for i in range(steps)
    ]
    out.append({"content": "All done."})
    return out


@dataclass
class SoakResult:
    """What a soak did and what the checker found."""

    seed: int
    runs: dict[str, list[dict[str, Any]]]
    actions: list[str]
    resumed: list[str]
    problems: dict[str, list[str]]
    attempts: int
    interrupted: int  # tool calls answered "interrupted" (cut short by a kill or handoff)
    seconds: float

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        counts: dict[str, int] = {}
        for what in self.actions:
            counts[what.split()[0]] = counts.get(what.split()[0], 0) + 1
        return (
            f"soak seed={self.seed}: {len(self.runs)} runs, {self.attempts} attempts, "
            f"{len(self.actions)} chaos actions {counts}, {self.interrupted} interrupted "
            f"tool calls, {len(self.resumed)} resumes after a crash loop, "
            f"{len(self.problems)} bad runs, {self.seconds:.1f} s"
        )


def soak(
    env: dict[str, str],
    log_dir: Path,
    *,
    turns: int,
    steps: int,
    workers: int,
    chaos_seconds: float,
    seed: int,
    finish_seconds: float = 60.0,
    say: Callable[[str], None] = print,
) -> SoakResult:
    """Run ``turns`` scripted turns on a pool of ``workers`` under chaos, then check them.

    The monkey acts for ``chaos_seconds``; then the pool is left alone to finish every
    run within ``finish_seconds``. A run suspended by a crash loop (possible when the
    monkey hits it several times in a row) is resumed, as an operator would.
    """
    began = time.monotonic()
    rng = random.Random(seed)
    say(f"soak seed={seed} turns={turns} steps={steps} workers={workers}")
    settings = Settings(redis_url=env["RUNNER_REDIS_URL"])
    client = Client(settings)
    pool = WorkerPool(env, log_dir, workers)
    monkey = Monkey(pool, rng)
    resumed: list[str] = []
    try:
        pool.replace_dead()
        runs = _submit_all(client, rng, turns, steps)
        until = time.monotonic() + chaos_seconds
        while time.monotonic() < until and not _all_terminal(client, runs):
            what = monkey.step()
            if what:
                say(f"  chaos: {what}")
            _tend(pool, client, resumed, say, rng.uniform(0.4, 1.2), monkey)
        monkey.thaw(everything=True)
        deadline = time.monotonic() + finish_seconds
        while not _all_terminal(client, runs) and time.monotonic() < deadline:
            _tend(pool, client, resumed, say, 0.3, monkey)
        # Quiet for two sweeps: nothing may resurrect or touch a finished run.
        lengths = {run_id: len(client.store.events(run_id)) for run_id in runs}
        time.sleep(2 * settings.sweep_seconds + 0.5)
        problems = _check_all(client, runs, lengths)
    finally:
        monkey.thaw(everything=True)
        pool.stop()
    streams = [client.store.events(r) for r in runs]
    attempts = sum(len(running_events(events)) for events in streams)
    cut = sum(
        1
        for events in streams
        for e in events
        if isinstance(e, MessageEvent) and e.role == "tool" and INTERRUPTED in e.content
    )
    result = SoakResult(
        seed, runs, monkey.done, resumed, problems, attempts, cut, time.monotonic() - began
    )
    say(result.summary())
    for run_id, found in problems.items():
        say(f"  {run_id}: " + "; ".join(found))
    return result


def _submit_all(
    client: Client, rng: random.Random, turns: int, steps: int
) -> dict[str, list[dict[str, Any]]]:
    runs = {}
    for i in range(turns):
        script = soak_script(rng, steps)
        sub = Submission(
            prompt=f"soak turn {i}",
            model="scripted",
            queue="default",
            max_steps=steps + 5,
            script=json.dumps({"steps": script}),
        )
        runs[client.submit(sub)] = script
    return runs


def _tend(
    pool: WorkerPool,
    client: Client,
    resumed: list[str],
    say: Callable[[str], None],
    seconds: float,
    monkey: Monkey,
) -> None:
    """For ``seconds``: thaw, replace dead workers, resume crash-looped runs."""
    until = time.monotonic() + seconds
    while True:
        monkey.thaw()
        if pool.replace_dead():
            say(f"  pool: {len(pool.live)} workers after replacing the dead")
        for record in client.runs(Status.SUSPENDED, limit=1000):
            say(f"  resume {record.id}: {record.reason}")
            client.resume(record.id)
            resumed.append(record.id)
        if time.monotonic() >= until:
            return
        time.sleep(min(0.1, max(until - time.monotonic(), 0)))


def _all_terminal(client: Client, runs: dict[str, Any]) -> bool:
    return all(r.status in TERMINAL for r in client.store.get_many(list(runs)))


def _check_all(
    client: Client, runs: dict[str, list[dict[str, Any]]], lengths: dict[str, int]
) -> dict[str, list[str]]:
    problems = {}
    for i, (run_id, script) in enumerate(runs.items()):
        events = client.store.events(run_id)
        record = client.store.get(run_id)
        found = transcript_problems(events, script, f"soak turn {i}", exact=False, record=record)
        if len(events) != lengths[run_id]:
            found.append(f"{len(events) - lengths[run_id]} events appended after it ended")
        found.extend(_rq_problems(client, run_id))
        if found:
            problems[run_id] = found
    return problems


def _rq_problems(client: Client, run_id: str) -> list[str]:
    """RQ must not hold a finished run in its queue or count it as failed."""
    queue = Queue("default", connection=client.rq)
    problems = []
    if run_id in queue.job_ids:
        problems.append("its job is still in the queue")
    if run_id in queue.failed_job_registry.get_job_ids():
        problems.append("RQ counts its job as failed")
    return problems
