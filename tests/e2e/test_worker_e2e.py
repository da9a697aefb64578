"""The worker process itself under real signals (issue 10, points 6 and 7).

A stop signal is never lost, whatever the worker is doing when it lands; a worker
restarted under the name of a SIGKILLed one takes that name over; ``runner dev`` leaves
no worker behind when its output pipe is gone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import redis

from runner.events import MessageEvent, Status, StatusEvent
from runner.keys import Keys, new_run_id
from runner.store import RunStore
from tests.conftest import FAST
from tests.helpers import RUNNER, step_script, wait_for, write_script

pytestmark = pytest.mark.slow

GRACE = float(FAST["RUNNER_SHUTDOWN_GRACE"])
BACKLOG = 2500  # queued runs the sweeper reads on every sweep: a sweep takes a while


def park_backlog(store: RunStore, n: int) -> None:
    """``n`` queued runs in a queue no worker serves, each read on every sweep."""
    events = [StatusEvent(status=Status.QUEUED), MessageEvent(role="user", content="wait")]
    for _ in range(n):
        store.create(new_run_id(), {"queue": "nobody", "model": "scripted"}, events)


def sweep_started(client: redis.Redis, lock: str, name: str, fresh_ms: int) -> bool:
    """True right after ``name`` took the sweep lock (it sweeps now, for a while)."""
    with client.pipeline(transaction=False) as pipe:
        holder, ttl = pipe.get(lock).pttl(lock).execute()
    return holder == name and ttl > fresh_ms


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGTERM])
def test_a_stop_signal_mid_sweep_stops_an_idle_worker(cli, env, store: RunStore, sig) -> None:
    # Leases long enough that the backlog is read but never re-pushed: every sweep is alike.
    slow = {**env, "RUNNER_LEASE_SECONDS": "600"}
    park_backlog(store, BACKLOG)
    worker = cli.worker("w1", env=slow)
    lock_ms = int(float(FAST["RUNNER_SWEEP_SECONDS"]) * 900)
    lock = Keys().sweep_lock
    fresh = lock_ms - 60

    # The first sweep runs in RQ's outer loop, which checks for a stop; a later one runs
    # inside its dequeue loop, which does not: wait for the second.
    def started() -> bool:
        return sweep_started(store.redis, lock, "w1", fresh)

    wait_for(started, 30, 0.002, what="a first sweep")
    wait_for(lambda: not store.redis.exists(lock), 30, 0.002, what="its lock to lapse")
    wait_for(started, 30, 0.002, what="a second sweep")
    signalled = time.monotonic()
    worker.signal(sig)
    try:
        code = worker.wait(timeout=GRACE)
    except subprocess.TimeoutExpired:
        pytest.fail(f"idle worker still running {GRACE}s after {sig.name}:\n{worker.output()}")
    assert code == 0, worker.output()
    assert time.monotonic() - signalled < GRACE
    assert "handing off on " + sig.name in worker.output()
    assert not store.redis.exists("rq:worker:w1") or store.redis.hexists("rq:worker:w1", "death")


def test_a_sigkilled_workers_name_is_taken_over(cli, env, store: RunStore, tmp_path) -> None:
    first = cli.worker("w1")
    first.signal_group(signal.SIGKILL)
    first.wait(10)
    assert store.redis.exists("rq:worker:w1")  # RQ's key lives on until its TTL

    # A container restarted with the same hostname and name; the old key is still there,
    # so wait for the new PID in it rather than for the key.
    again = cli.spawn("worker", "--name", "w1", log="worker-w1-again.log")
    wait_for(
        lambda: store.redis.hget("rq:worker:w1", "pid") == str(again.pid) or not again.alive(),
        20,
        what="the restarted worker to register",
    )
    assert again.alive(), again.output()
    assert "took over the name of a dead worker" in again.output(), again.output()
    script = write_script(tmp_path / "s.json", step_script(2))
    run_id = cli.submit("--model", "scripted", "--script", str(script), "hi")
    wait_for(lambda: store.get(run_id).terminal, 30, what="the turn to end")
    record = store.get(run_id)
    assert (record.status, record.worker) == (Status.SUCCEEDED, "w1")

    twin = cli("worker", "--name", "w1", timeout=30)  # the live one keeps its name
    assert twin.returncode == 2, twin.stderr
    assert twin.stderr.count("\n") == 1, twin.stderr
    assert "a worker named w1 is registered already" in twin.stderr
    assert again.alive()


def worker_pids(dev_pid: int) -> list[int]:
    """PIDs of live ``runner worker`` processes that ``runner dev`` (``dev_pid``) named."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        named = any(a.startswith(f"dev-{dev_pid}-".encode()) for a in args)
        if b"worker" in args and named and state != "Z":
            found.append(int(entry.name))
    return found


def test_dev_stops_its_workers_when_its_output_pipe_is_gone(env) -> None:
    # `runner dev 2>&1 | tee dev.log`, then Ctrl-C: the terminal signals the whole group,
    # tee dies first and dev's next write finds the pipe closed.
    read_end, write_end = os.pipe()
    dev = subprocess.Popen(
        [*RUNNER, "dev", "--workers", "2"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=write_end,
        stderr=write_end,
        start_new_session=True,
    )
    os.close(write_end)
    try:
        client = redis.Redis.from_url(env["RUNNER_REDIS_URL"])
        wait_for(lambda: len(client.smembers("rq:workers:default")) == 2, 30, what="2 workers")
        assert len(worker_pids(dev.pid)) == 2
        os.close(read_end)  # tee is gone
        os.killpg(dev.pid, signal.SIGINT)  # Ctrl-C
        wait_for(lambda: not worker_pids(dev.pid), GRACE + 3, what="no dev worker left")
        dev.wait(10)
    finally:
        for pid in worker_pids(dev.pid):
            os.kill(pid, signal.SIGKILL)
        if dev.poll() is None:
            dev.kill()
            dev.wait()


def test_dev_workers_die_with_dev(cli, env) -> None:
    # However dev ends (here SIGKILL, which it cannot catch), its workers do not outlive it.
    dev = cli.spawn("dev", "--workers", "2", log="dev.log")
    client = redis.Redis.from_url(env["RUNNER_REDIS_URL"])
    wait_for(lambda: len(client.smembers("rq:workers:default")) == 2, 30, what="2 workers")
    assert len(worker_pids(dev.pid)) == 2
    pid = dev.pid
    dev.signal(signal.SIGKILL)
    dev.wait(10)
    try:
        wait_for(lambda: not worker_pids(pid), GRACE + 3, what="no dev worker left")
        # They got SIGTERM from the kernel: each stopped as on any stop, registration gone.
        wait_for(lambda: not client.smembers("rq:workers:default"), 10, what="unregistered")
    finally:
        for orphan in worker_pids(pid):
            os.kill(orphan, signal.SIGKILL)


def test_dev_refuses_an_evicting_server_once(cli, server) -> None:
    # Every worker would refuse it; dev says so once instead of respawning them for ever.
    server.client().config_set("maxmemory-policy", "allkeys-lru")
    done = cli("dev", "--workers", "2", timeout=30)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert "maxmemory-policy is allkeys-lru" in done.stderr
    assert not server.client().smembers("rq:workers")
