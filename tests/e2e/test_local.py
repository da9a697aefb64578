"""``runner demo`` and ``runner dev``: the foreground commands a new user starts with."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import redis

from tests.helpers import step_script, wait_for, write_script


def test_demo_hands_off_and_checks_its_transcript(cli) -> None:
    done = cli("demo", timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SIGTERM →" in done.stdout
    assert "(handoff)" in done.stdout
    assert "✓ succeeded: 10/10 steps, each exactly once and in order" in done.stdout
    assert "; files followed the turn to demo-" in done.stdout  # two roots: two hosts
    assert "+++ b/calc.py" in done.stdout and "+    return a + b" in done.stdout


def test_dev_runs_workers_until_ctrl_c(cli, env, tmp_path: Path) -> None:
    dev = cli.spawn("dev", "--workers", "2", log="dev.log")
    client = redis.Redis.from_url(env["RUNNER_REDIS_URL"])
    wait_for(lambda: len(client.smembers("rq:workers:default")) == 2, 30, what="2 dev workers")
    script = write_script(tmp_path / "s.json", step_script(3))
    run_id = cli.submit("--model", "scripted", "--script", str(script), "hi")
    assert cli("follow", run_id).returncode == 0
    started = time.monotonic()
    dev.signal(signal.SIGINT)
    assert dev.wait(timeout=30) == 0, dev.output()
    assert time.monotonic() - started < float(env["RUNNER_SHUTDOWN_GRACE"]) + 5
    wait_for(lambda: not client.smembers("rq:workers:default"), 10, what="workers gone")


def test_dev_replaces_a_worker_that_dies(cli, env) -> None:
    dev = cli.spawn("dev", "--workers", "1", log="dev.log")
    client = redis.Redis.from_url(env["RUNNER_REDIS_URL"])
    first = wait_for(lambda: client.smembers("rq:workers:default"), 30, what="a dev worker")
    pid = int(wait_for(lambda: client.hget(next(iter(first)), "pid"), 10, what="its pid"))
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: "starting another" in dev.output(), 15, what="a replacement")
    dev.signal(signal.SIGTERM)
    assert dev.wait(timeout=30) == 0
