"""Issue 13 point 3 and issue 14 point 2: budgets and approvals park a run, its worker freed.

Real workers and the CLI as subprocesses: a run parks as waiting with its lease released
while its single worker finishes another run; ``resume --add-...``, ``approve`` and
``deny`` from other processes requeue it, and every step lands exactly once.
"""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from runner.events import MessageEvent, Status, StatusEvent
from runner.store import RunStore
from tests.conftest import Cli
from tests.helpers import run_at_once, wait_for, write_script

# Every scripted answer costs $1: 40 characters are 10 output tokens at $100,000 per 1M.
PRICES = {"scripted": {"input": 0, "output": 100_000}}


def counting_steps(n: int) -> list[dict[str, Any]]:
    """``n`` shell steps that each append a line to a file and print it, then an answer."""
    steps: list[dict[str, Any]] = [
        {
            "content": f"step {i} ".ljust(40, "."),
            "tool": "shell",
            "args": {"command": f"echo ran-{i} >> ran.txt && cat ran.txt"},
        }
        for i in range(n)
    ]
    return [*steps, {"content": "All done."}]


def messages(store: RunStore, run_id: str) -> list[MessageEvent]:
    return [e for e in store.events(run_id) if isinstance(e, MessageEvent)]


def statuses(store: RunStore, run_id: str) -> list[StatusEvent]:
    return [e for e in store.events(run_id) if isinstance(e, StatusEvent)]


def wait_status(store: RunStore, run_id: str, status: Status, timeout: float = 60) -> None:
    wait_for(lambda: store.get(run_id).status is status, timeout, what=f"{run_id} {status}")


def assert_each_step_once(store: RunStore, run_id: str, n: int) -> None:
    said = [m.content for m in messages(store, run_id) if m.role == "assistant"]
    assert [s.split(" ")[1] for s in said[:n]] == [str(i) for i in range(n)], said
    assert said[n:] == ["All done."], said
    results = [m for m in messages(store, run_id) if m.role == "tool"]
    assert [m.tool_call_id for m in results] == [f"call_{i}" for i in range(n)]
    assert not any("interrupted" in m.content for m in results)
    ran = [word for word in results[-1].content.split() if word.startswith("ran-")]
    assert ran == [f"ran-{i}" for i in range(n)]  # each tool call ran once


@pytest.mark.slow
def test_a_budget_parks_the_run_and_frees_its_worker_until_resumed(
    cli: Cli, store: RunStore, tmp_path: Path
) -> None:
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps(PRICES))
    cli.env["RUNNER_PRICES"] = str(prices)
    cli.worker("w1")  # the only worker
    script = write_script(tmp_path / "s.json", counting_steps(4))
    run_id = cli.submit("--model", "scripted", "--script", str(script), "--max-cost", "2", "go")
    # Two answers cost $2: the limit is met after the second is committed, before its tool.
    parked = cli("follow", run_id, timeout=60)
    assert parked.returncode == 5, parked.stdout + parked.stderr
    assert "cost budget reached ($2.0000 of 2)" in parked.stdout
    record = store.get(run_id)
    assert (record.status, record.waiting_for, record.cost) == (Status.WAITING, "cost", 2.0)
    assert not store.redis.exists(store.keys.lease(run_id))
    assert messages(store, run_id)[-1].tool_calls  # call_1 was asked for, not started

    other = write_script(tmp_path / "o.json", [{"content": "quick"}])
    done = cli("submit", "--model", "scripted", "--script", str(other), "--follow", "meanwhile")
    assert done.returncode == 0, done.stdout + done.stderr  # on w1, while the first waits
    assert store.get(run_id).status is Status.WAITING

    shown = {
        line.strip()[:15].strip(): line.strip()[15:].strip()
        for line in cli("status", run_id).stdout.splitlines()[1:]
    }
    assert (shown["waiting for"], shown["cost"]) == ("cost", "$2.0000"), shown
    listed = cli("list", "--status", "waiting", "--json")
    assert [json.loads(line)["id"] for line in listed.stdout.splitlines()] == [run_id]

    again = cli("resume", run_id, "--add-cost", "-1")
    assert again.returncode == 2 and again.stderr.count("\n") == 1, again.stderr
    resumed = cli("resume", run_id, "--add-cost", "10")
    assert resumed.returncode == 0, resumed.stderr
    finished = cli("follow", run_id, timeout=60)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert_each_step_once(store, run_id, 4)
    assert store.get(run_id).max_cost == 12.0
    assert [s.status for s in statuses(store, run_id)].count(Status.WAITING) == 1


@pytest.mark.slow
def test_approvals_park_before_the_tool_and_resume_on_any_worker(
    cli: Cli, store: RunStore, tmp_path: Path
) -> None:
    cli.env["RUNNER_APPROVE_TOOLS"] = "write_file"  # read by the worker about to run it
    cli.worker("w1")
    risky = [
        {"content": "cleaning", "tool": "shell", "args": {"command": "echo approved-ran"}},
        {"content": "writing", "tool": "write_file", "args": {"path": "x", "content": "1"}},
        {"content": "done"},
    ]
    script = write_script(tmp_path / "s.json", risky)
    run_id = cli.submit("--model", "scripted", "--script", str(script), "--approve", "shell", "go")
    parked = cli("follow", run_id, timeout=60)
    assert parked.returncode == 5, parked.stdout + parked.stderr
    assert 'needs approval: shell {"command": "echo approved-ran"}' in parked.stdout
    assert [m.role for m in messages(store, run_id)] == ["user", "assistant"]  # not run yet
    assert store.get(run_id).worker == "w1"

    other = write_script(tmp_path / "o.json", [{"content": "quick"}])
    meanwhile = cli.submit("--model", "scripted", "--script", str(other), "meanwhile")
    done = cli("follow", meanwhile, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert store.get(meanwhile).worker == "w1", "the original worker finished another run"
    # The original worker is busy now: the approved run resumes on the one that is free.
    busy = write_script(tmp_path / "b.json", [{"content": "busy", "sleep": 120}])
    hog = cli.submit("--model", "scripted", "--script", str(busy), "occupy w1")
    wait_for(lambda: store.get(hog).status is Status.RUNNING, 60, what="w1 to be busy")
    cli.worker("w2")
    approved = cli("approve", run_id)  # another process, any host
    assert approved.returncode == 0, approved.stderr
    # write_file needs approval on these workers (RUNNER_APPROVE_TOOLS): parked again.
    wait_status(store, run_id, Status.WAITING)
    assert store.get(run_id).gate_tool == "write_file"
    assert store.get(run_id).worker == "w2", "resumed on the free worker"
    assert cli("cancel", hog).returncode == 0
    results = [m for m in messages(store, run_id) if m.role == "tool"]
    assert [r.content.splitlines()[0] for r in results] == ["approved-ran"]
    denied = cli("deny", run_id, "--reason", "not on prod")
    assert denied.returncode == 0, denied.stderr
    finished = cli("follow", run_id, timeout=60)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    results = [m for m in messages(store, run_id) if m.role == "tool"]
    assert results[-1].content == "denied by user: not on prod"
    assert [m.content for m in messages(store, run_id) if m.role == "assistant"][-1] == "done"


def race(cli: Cli, *commands: list[str]) -> list[subprocess.CompletedProcess[str]]:
    """Start the commands at once (each its own process) and wait for all of them."""
    return run_at_once(cli.env, commands, timeout=60)


def parked_for_approval(cli: Cli, store: RunStore, script: Path) -> str:
    run_id = cli.submit("--model", "scripted", "--script", str(script), "--approve", "shell", "go")
    wait_status(store, run_id, Status.WAITING)
    return run_id


@pytest.mark.slow
def test_racing_approvals_cancels_and_handoffs_apply_once(
    cli: Cli, store: RunStore, tmp_path: Path
) -> None:
    slow = [
        {"content": "slow", "tool": "shell", "args": {"command": "sleep 1.5; echo slow-ran"}},
        {"content": "done"},
    ]
    script = write_script(tmp_path / "s.json", slow)
    w1 = cli.worker("w1")
    twice, cancelled = (parked_for_approval(cli, store, script) for _ in range(2))
    w1.signal(signal.SIGTERM)
    wait_for(lambda: not w1.alive(), 30, what="w1 to exit")

    # Two approvals at once: one applies, the other is told the run is no longer waiting.
    codes = sorted(d.returncode for d in race(cli, ["approve", twice], ["approve", twice]))
    assert codes == [0, 2]
    # An approval and a cancel at once (no worker yet): cancelled whoever wins.
    race(cli, ["approve", cancelled], ["cancel", cancelled])
    assert store.get(cancelled).status is Status.CANCELLED

    # The approved run is handed off in the middle of its approved tool: the next worker
    # carries on without asking again.
    w2 = cli.worker("w2")
    wait_for(lambda: store.get(twice).status is Status.RUNNING, 30, what="the approved run")
    w3 = cli.worker("w3")
    w2.signal(signal.SIGTERM)  # the approved call runs first thing in that attempt
    done = cli("follow", twice, timeout=90)
    assert done.returncode == 0, done.stdout + done.stderr
    waits = [s for s in statuses(store, twice) if s.status is Status.WAITING]
    assert len(waits) == 1, statuses(store, twice)
    approvals = [s for s in statuses(store, twice) if (s.reason or "").startswith("approved")]
    assert len(approvals) == 1
    assert not any("slow-ran" in m.content for m in messages(store, cancelled))
    assert w3.alive()
