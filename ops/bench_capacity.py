"""How far one server goes: commits per second that one Redis/Valkey primary takes from runner.

Each writer process holds one run and commits realistic steps (an assistant tool call,
then its tool result, as ``runner bench`` does) through the real store path, one
fenced EVALSHA per step, as fast as it can. The floor beside it is the same number of
processes sending PING (the server's round-trip capacity for this many clients on this
machine). Figures are per second, summed over writers, medians of ``--rounds`` rounds.

    python ops/bench_capacity.py                       # the embedded server
    RUNNER_REDIS_URL=redis://host:6379/0 python ops/bench_capacity.py --writers 1,4,16

Everything lives under a private prefix that is deleted at the end. The writers share
the machine with the server: on a small machine the figure is a floor for what a
dedicated server host would take.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import secrets
import statistics
import time
from typing import Any

from runner.bench.commits import step_events
from runner.connection import connect, redis_url
from runner.events import MessageEvent, Status, StatusEvent
from runner.keys import Keys, new_run_id
from runner.settings import Settings
from runner.store import RunStore


def _writer(url: str, prefix: str, seconds: float, mode: str, start: Any, out: Any) -> None:
    settings = Settings(redis_url=url, prefix=prefix)
    client = connect(settings, url=url)
    store = RunStore(client, Keys(prefix), settings.retention_seconds)
    run_id = new_run_id()
    first = [StatusEvent(status=Status.QUEUED), MessageEvent(role="user", content="go")]
    store.create(run_id, {"queue": "bench", "model": "scripted", "max_steps": "1"}, first)
    epoch = store.claim(run_id, "bench", 600)
    assert epoch is not None
    seen, n = 3, 0
    start.wait()
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        if mode == "commit":
            events = step_events(n)
            store.commit(run_id, epoch, events, seen)
            seen += len(events)
        else:
            client.ping()
        n += 1
    out.put(n)


def _round(url: str, prefix: str, writers: int, seconds: float, mode: str) -> float:
    ctx = mp.get_context("fork")
    start, out = ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(target=_writer, args=(url, prefix, seconds, mode, start, out))
        for _ in range(writers)
    ]
    for p in procs:
        p.start()
    time.sleep(0.5)  # every writer connected and holding its run before the clock starts
    start.set()
    total = sum(out.get(timeout=seconds + 30) for _ in procs)
    for p in procs:
        p.join()
    return total / seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writers", default="1,2,4,8", help="comma-separated writer counts")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of one round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    settings = Settings()
    url = redis_url(settings)
    prefix = f"bench-{secrets.token_hex(4)}"
    rows = []
    try:
        for writers in (int(w) for w in args.writers.split(",")):
            commits = [
                _round(url, prefix, writers, args.seconds, "commit") for _ in range(args.rounds)
            ]
            pings = [_round(url, prefix, writers, args.seconds, "ping") for _ in range(args.rounds)]
            c, p = statistics.median(commits), statistics.median(pings)
            rows.append({"writers": writers, "commits_per_s": round(c), "pings_per_s": round(p)})
    finally:
        client = connect(settings, url=url)
        for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            client.delete(key)
    if args.json:
        print(json.dumps(rows))
    else:
        print(f"{'writers':>8} {'commits/s':>10} {'PING/s':>10} {'ratio':>6}")
        for r in rows:
            c, p = r["commits_per_s"], r["pings_per_s"]
            print(f"{r['writers']:>8} {c:>10} {p:>10} {c / p:>6.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
