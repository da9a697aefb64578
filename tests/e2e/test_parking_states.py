"""resume, approve and deny against queued, running, waiting, suspended, ended and unknown runs.

Through the CLI (one line, exit 2 for a wrong state) and through ``runner serve``
(409 for a wrong state, 404 for no such run, 403 for a read-only token). The runs are
put in each state with the store's own scripts; the commands are real subprocesses.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from runner import parking
from runner.events import MessageEvent, Status, StatusEvent, ToolCallOut
from runner.keys import new_run_id
from runner.parking import Park
from runner.store import RunStore
from tests.conftest import Cli
from tests.helpers import RUNNER
from tests.serving import free_port, make_api

UNKNOWN = "r0000000000deadbeef"
SCRIPT = json.dumps({"steps": [{"content": "done"}]})
ASK = MessageEvent(
    role="assistant",
    content="",
    tool_calls=[ToolCallOut(id="call_0", name="shell", arguments={"command": "ls"})],
)


def make(store: RunStore, state: str) -> str:
    """A run in ``state`` (queued on a queue nobody serves, or put there by the scripts)."""
    if state == "unknown":
        return UNKNOWN
    run_id = new_run_id()
    fields = {"queue": "idle", "model": "scripted", "max_steps": "5", "max_tokens": "10"}
    store.create(run_id, fields, [StatusEvent(status=Status.QUEUED)], SCRIPT)
    if state == "queued":
        return run_id
    epoch = store.claim(run_id, "w-test", 30)
    assert epoch is not None
    store.commit(run_id, epoch, [ASK], len(store.events(run_id)))
    if state == "approval":
        parking.park(
            store, run_id, epoch, "w-test", Park("needs approval", "approval", "call_0", "shell")
        )
    elif state == "budget":
        parking.park(store, run_id, epoch, "w-test", Park("tokens budget reached", "tokens"))
    elif state == "suspended":
        store.requeue_dead(run_id, "died", 0, epoch=epoch, lease_gone=False)
    elif state == "ended":
        store.finish(run_id, epoch, Status.SUCCEEDED)
    return run_id


# state -> (resume, approve, deny): None for applied, else a part of the one-line error.
EXPECTED: dict[str, tuple[str | None, str | None, str | None]] = {
    "queued": ("is queued, not suspended", "is queued, not waiting for an approval", "is queued"),
    "running": ("is running, not suspended", "is running, not waiting", "is running"),
    "approval": ("waits for an approval", None, None),
    "budget": (None, "waits for its tokens budget", "waits for its tokens budget"),
    "suspended": (None, "is suspended, not waiting", "is suspended"),
    "ended": ("is succeeded, not suspended", "is succeeded", "is succeeded"),
    "unknown": ("no such run", "no such run", "no such run"),
}
COMMANDS = (["resume", "--add-tokens", "5"], ["approve"], ["deny", "--reason", "no"])


@pytest.mark.slow
def test_each_command_in_each_state(cli: Cli, store: RunStore) -> None:
    cases = [
        (state, args, problem, make(store, state))
        for state, expected in EXPECTED.items()
        for args, problem in zip(COMMANDS, expected, strict=True)
    ]
    # Each case has its own run, so the commands run side by side (the CLI's start-up
    # is most of their time).
    procs = [
        subprocess.Popen(
            [*RUNNER, args[0], run_id, *args[1:]],
            env=cli.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _, args, _, run_id in cases
    ]
    for (state, args, problem, run_id), proc in zip(cases, procs, strict=True):
        _, stderr = proc.communicate(timeout=120)
        if problem is None:
            assert proc.returncode == 0, (state, args, stderr)
            record = store.get(run_id)
            assert (record.status, record.waiting_for) == (Status.QUEUED, ""), (state, args)
        else:
            assert proc.returncode == 2, (state, args, stderr)
            assert stderr.count("\n") == 1 and problem in stderr, (state, stderr)
            assert "Traceback" not in stderr
    # What each applied command did to the run.
    resumed = make(store, "budget")
    assert cli("resume", resumed, "--add-tokens", "5").returncode == 0
    assert store.get(resumed).max_tokens == 15
    for bad in (["--add-tokens", "-5"], ["--add-time", "soon"], ["--add-cost", "nan"]):
        done = cli("resume", resumed, *bad)
        assert done.returncode == 2 and done.stderr.startswith("error: "), done.stderr


@pytest.mark.slow
def test_the_same_over_http(cli: Cli, store: RunStore) -> None:
    api = make_api(cli)
    states: dict[str, Any] = {s: make(store, s) for s in ("approval", "budget", "queued")}
    with api.http(api.reader) as reader:
        refused = reader.post(f"/runs/{states['approval']}/approve", json={})
        assert refused.status_code == 403, refused.text
    with api.http() as http:
        assert http.post(f"/runs/{states['queued']}/approve", json={}).status_code == 409
        assert http.post(f"/runs/{UNKNOWN}/deny", json={"reason": "x"}).status_code == 404
        assert http.post(f"/runs/{states['approval']}/deny", json={"reason": 5}).status_code == 400
        bad = http.post(f"/runs/{states['budget']}/resume", json={"add_tokens": -1})
        assert bad.status_code == 400 and "add-tokens" in bad.json()["error"], bad.text
        done = http.post(
            f"/runs/{states['budget']}/resume", json={"add_tokens": 7, "add_time": "1m"}
        )
        assert done.json() == {"id": states["budget"], "before": "waiting"}, done.text
        assert store.get(states["budget"]).max_tokens == 17
        body = {"prompt": "p", "script": SCRIPT, "queue": "idle", "max_time": "30m"}
        made = http.post("/runs", json={**body, "max_cost": 1.5, "approve": ["shell"]})
        record = store.get(made.json()["id"])
        assert (record.max_time, record.max_cost, record.approve) == (1800.0, 1.5, "shell")
        assert http.post("/runs", json={**body, "max_tokens": -3}).status_code == 400
    # The CLI through RUNNER_API_URL, Redis out of reach.
    remote = {
        **cli.env,
        "RUNNER_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        "RUNNER_API_URL": api.url,
        "RUNNER_API_TOKEN": api.token,
    }
    denied = cli("deny", states["approval"], "--reason", "not now", env=remote)
    assert denied.returncode == 0, denied.stderr
    last = [e for e in store.events(states["approval"]) if isinstance(e, MessageEvent)][-1]
    assert (last.role, last.content) == ("tool", "denied by user: not now")
    again = cli("approve", states["approval"], env=remote)
    assert again.returncode == 2 and "is queued" in again.stderr, again.stderr
