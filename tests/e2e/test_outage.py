"""A server that refuses writes is an outage, not a crash (issue 10, 2; guarantee 10).

Real workers against the test's own server; the server is filled mid-turn by lowering
``maxmemory`` (``noeviction``) to just above what it uses, then given room again.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from runner.events import Status, StatusEvent
from runner.store import RunStore
from tests.chaoslib import transcript_problems
from tests.conftest import FAST, Server
from tests.helpers import Proc, step_script, wait_for, write_script

pytestmark = pytest.mark.slow

PROMPT = "outage"
LEASE = float(FAST["RUNNER_LEASE_SECONDS"])
GRACE = float(FAST["RUNNER_SHUTDOWN_GRACE"])


def logs(workers: list[Proc]) -> str:
    return "".join(w.output() for w in workers)


def fill(server: Server) -> None:
    """Leave the server no room: maxmemory below what it uses, nothing evicted."""
    admin = server.client()
    admin.config_set("maxmemory-policy", "noeviction")
    admin.config_set("maxmemory", int(admin.info("memory")["used_memory"]) // 2)


def refused(server: Server) -> int:
    """How many writes the server has refused for want of memory."""
    stats = server.client().info("errorstats")
    return int(stats.get("errorstat_OOM", {}).get("count", 0))


def make_room(server: Server) -> None:
    server.client().config_set("maxmemory", 0)


def statuses(store: RunStore, run_id: str) -> list[StatusEvent]:
    return [e for e in store.events(run_id) if isinstance(e, StatusEvent)]


def test_a_full_server_mid_turn_is_waited_out(
    cli, server: Server, store: RunStore, tmp_path: Path
) -> None:
    steps = step_script(8, sleep=0.5)
    script = write_script(tmp_path / "script.json", steps)
    workers = [cli.worker("w1"), cli.worker("w2")]
    run_id = cli.submit("--model", "scripted", "--script", str(script), PROMPT)
    wait_for(lambda: store.get(run_id).steps >= 3, 20, what="three steps committed")
    fill(server)
    try:
        wait_for(lambda: refused(server) >= 1, 20, what="writes refused")
        # Longer than a lease: a lease must live through an outage of writes.
        time.sleep(LEASE * 2)
        assert store.get(run_id).status is Status.RUNNING
    finally:
        make_room(server)
    done = cli("follow", run_id, "--json", timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr

    record = store.get(run_id)
    problems = transcript_problems(store.events(run_id), steps, PROMPT, record=record)
    assert not problems, problems
    assert record.dirty == 0
    # One attempt did the whole turn: no requeue, no second work horse.
    assert [e.status for e in statuses(store, run_id)] == [
        Status.QUEUED,
        Status.RUNNING,
        Status.SUCCEEDED,
    ]
    output = logs(workers)
    assert "server out of memory; retrying" in output, output
    assert output.count("attempt started") == 1, output
    assert f"run={run_id}" in output
    assert "Traceback" not in output, output
    assert all(w.alive() for w in workers), output


def test_idle_workers_ride_out_a_full_server(
    cli, server: Server, store: RunStore, tmp_path: Path
) -> None:
    """Dequeue and maintenance writes are refused too: workers wait, then take the run."""
    workers = [cli.worker("w1"), cli.worker("w2")]
    steps = step_script(2)
    script = write_script(tmp_path / "script.json", steps)
    fill(server)
    try:
        wait_for(lambda: refused(server) >= 1, 20, what="writes refused")
        time.sleep(LEASE)
        assert all(w.alive() for w in workers), logs(workers)
    finally:
        make_room(server)
    run_id = cli.submit("--model", "scripted", "--script", str(script), PROMPT)
    done = cli("follow", run_id, "--json", timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    problems = transcript_problems(store.events(run_id), steps, PROMPT, record=store.get(run_id))
    assert not problems, problems
    output = logs(workers)
    assert "Traceback" not in output, output
    assert "server out of memory; waiting" in output, output
    # One plain line per worker when it starts, not one per retry.
    assert output.count("server out of memory; waiting") <= 2 * len(workers), output


def test_a_handoff_during_the_outage_parks_the_run_with_the_reason(
    cli, server: Server, store: RunStore, tmp_path: Path
) -> None:
    steps = step_script(6, sleep=0.5)
    script = write_script(tmp_path / "script.json", steps)
    workers = {name: cli.worker(name) for name in ("w1", "w2")}
    run_id = cli.submit("--model", "scripted", "--script", str(script), PROMPT)
    wait_for(lambda: store.get(run_id).steps >= 3, 20, what="three steps committed")
    victim = workers.pop(store.get(run_id).worker)
    fill(server)
    try:
        wait_for(lambda: refused(server) >= 1, 20, what="writes refused")
        wait_for(lambda: "server out of memory; retrying" in victim.output(), 20, what="a retry")
        victim.signal(signal.SIGTERM)
        # Its own deadline is the grace (the horse is killed at grace + 0.5 s); this
        # process may see the exit a little later on a loaded machine.
        assert victim.wait(GRACE + 3) == 0, victim.output()
        record = store.get(run_id)
        assert record.status is Status.QUEUED
        assert "server out of memory" in record.reason
        assert record.dirty == 0
    finally:
        make_room(server)
    done = cli("follow", run_id, "--json", timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    events = store.events(run_id)
    record = store.get(run_id)
    problems = transcript_problems(events, steps, PROMPT, exact=False, record=record)
    assert not problems, problems
    assert record.dirty == 0
    assert "Traceback" not in logs([victim, *workers.values()])


def test_an_outage_longer_than_the_retry_budget_suspends_the_run(
    cli, server: Server, store: RunStore, tmp_path: Path, env: dict[str, str]
) -> None:
    steps = step_script(4, sleep=0.3)
    script = write_script(tmp_path / "script.json", steps)
    short = {**env, "RUNNER_RECONNECT_SECONDS": "1"}
    workers = [cli.worker("w1", env=short)]
    run_id = cli.submit("--model", "scripted", "--script", str(script), PROMPT)
    wait_for(lambda: store.get(run_id).steps >= 2, 20, what="two steps committed")
    fill(server)
    try:
        record = wait_for(
            lambda: (r := store.get(run_id)).parked and r, 20, what="the run to be parked"
        )
        assert record.status is Status.SUSPENDED
        assert "server out of memory" in record.reason, record.reason
    finally:
        make_room(server)
    assert cli("resume", run_id).returncode == 0
    done = cli("follow", run_id, "--json", timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    record = store.get(run_id)
    problems = transcript_problems(store.events(run_id), steps, PROMPT, exact=False, record=record)
    assert not problems, problems
    output = logs(workers)
    assert "Traceback" not in output, output
    assert output.count("attempt started") == 2, output
