"""Fairness between tenants: how long a small key waits behind a big key's burst.

Starts its own Valkey (runner's embedded server in a temporary directory) and three
``runner worker`` subprocesses, then, once without a limit and once with
``RUNNER_KEY_CONCURRENCY=LIMIT``: submits ``--big`` one-step turns (each thinks
``--think`` seconds) of key ``big``, right behind them 5 of key ``small``, and waits for
the small ones. Figures (server-clock times from the runs' stream ids):

- small wait: the small key's first submit -> its first turn running;
- small done: -> the last small turn ended;
- deferral: the big key's runs deferred per second by the fleet (limit run only);
- ratio: small wait without the limit / with it.

    .venv/bin/python ops/bench_fairness.py [--big 60] [--think 0.5] [--limit 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rq import Queue

from runner.bench.procs import wait_until
from runner.client import Client, Submission
from runner.embedded import ensure_server, stop_server
from runner.events import Status, StatusEvent
from runner.settings import Settings

WORKERS = 3
SMALL = 5


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--big", type=int, default=60, help="turns of the big key (default 60)")
    p.add_argument("--think", type=float, default=0.5, help="seconds a turn thinks")
    p.add_argument("--limit", type=int, default=2, help="RUNNER_KEY_CONCURRENCY (default 2)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    return p.parse_args(argv)


def ms(event_id: str) -> int:
    return int(event_id.split("-", maxsplit=1)[0])


def started(client: Client, run_id: str) -> int | None:
    for e in client.store.events(run_id):
        if isinstance(e, StatusEvent) and e.status is Status.RUNNING:
            return ms(e.id)
    return None


def one_round(root: Path, url: str, args: argparse.Namespace, limit: int) -> dict[str, Any]:
    prefix = f"b{limit}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNNER_")}
    env.update(
        RUNNER_REDIS_URL=url,
        RUNNER_PREFIX=prefix,
        RUNNER_QUEUE=prefix,
        RUNNER_DATA_DIR=str(root / "data"),
        RUNNER_WORKSPACE_ROOT=str(root / "ws"),
        RUNNER_KEY_CONCURRENCY=str(limit),
    )
    client = Client(Settings(redis_url=url, prefix=prefix, queue=prefix))
    logs = root / f"{prefix}.log"
    with open(logs, "ab") as log:
        workers = [
            subprocess.Popen(
                [sys.executable, "-m", "runner", "worker", "--name", f"{prefix}-w{i}"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            for i in range(WORKERS)
        ]
    try:
        rq_conn = client.rq
        wait_until(
            lambda: all(rq_conn.exists(f"rq:worker:{prefix}-w{i}") for i in range(WORKERS)),
            60,
            "the workers",
        )
        script = json.dumps({"steps": [{"content": "thinking", "sleep": args.think}]})

        def submit(key: str) -> str:
            sub = Submission(prompt="go", model="scripted", script=script, key=key)
            return client.submit(sub)

        for _ in range(args.big):
            submit("big")
        small = [submit("small") for _ in range(SMALL)]
        t0 = ms(client.store.events(small[0])[0].id)
        queue = Queue(prefix, connection=rq_conn)
        drained = None
        timeout = 60 + args.big * args.think * 2

        def small_done() -> bool:
            nonlocal drained
            if drained is None and limit and queue.count == 0:
                drained = time.time()
            return all(r.terminal for r in client.store.get_many(small))

        submitted_at = time.time()
        wait_until(small_done, timeout, "the small key's turns")
        first = min(s for s in (started(client, i) for i in small) if s is not None)
        last = max(ms(client.store.events(i)[-1].id) for i in small)
        figures: dict[str, Any] = {
            "limit": limit,
            "small_wait_ms": first - t0,
            "small_done_ms": last - t0,
        }
        if drained is not None:
            figures["deferred_per_s"] = round(args.big / max(drained - submitted_at, 1e-3), 1)
        return figures
    finally:
        for w in workers:
            if w.poll() is None:
                os.killpg(w.pid, signal.SIGKILL)
                w.wait(timeout=30)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="runner-bench-fairness-"))
    data = root / "server"
    url = ensure_server(data)
    try:
        rounds = [one_round(root, url, args, limit) for limit in (0, args.limit)]
    finally:
        stop_server(data)
        shutil.rmtree(root, ignore_errors=True)
    free, fair = rounds
    result = {
        "big": args.big,
        "think_s": args.think,
        "workers": WORKERS,
        "no_limit": free,
        "with_limit": fair,
        "ratio_small_wait": round(free["small_wait_ms"] / max(fair["small_wait_ms"], 1), 2),
        "load_average": os.getloadavg()[0],
    }
    if args.json:
        print(json.dumps(result))
    else:
        for name, r in (("no limit", free), (f"limit {args.limit}", fair)):
            print(
                f"{name:>9}: small key's first turn after {r['small_wait_ms']} ms, "
                f"all {SMALL} done after {r['small_done_ms']} ms"
                + (f"; {r['deferred_per_s']} runs deferred/s" if "deferred_per_s" in r else "")
            )
        print(f"ratio (small wait, no limit / limit): {result['ratio_small_wait']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
