"""Issue 14: every command against queued, running, waiting, suspended, ended and unknown runs.

Each state is produced for real by workers (subprocesses): a queue nobody serves, a
turn thinking on a worker, an approval park (``--approve shell``: the worker is freed),
a crash with no restarts left, a finished turn. Each run is the turn of a session of
its own, so the session commands meet the same states. The commands are real CLI
processes, run side by side where they do not depend on each other: what they print,
their exit codes, and what they did (or did not do) to the run are checked.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from runner.events import MessageEvent
from runner.store import RunStore
from tests.conftest import Cli
from tests.helpers import RUNNER, run_at_once, wait_for, write_script

pytestmark = pytest.mark.slow
UNKNOWN = "r" + "0" * 18
LIVE = ("queued", "running", "waiting", "suspended")
STATES = (*LIVE, "ended", "unknown")


def run_all(cli: Cli, commands: Sequence[Sequence[str]]) -> list[subprocess.CompletedProcess[str]]:
    """Run the commands at once (each its own process); their results, in order."""
    return run_at_once(cli.env, commands)


def shown(state: str) -> str:
    """The status a state's run shows (an ended run here is one that succeeded)."""
    return "succeeded" if state == "ended" else state.split("-", maxsplit=1)[0]


def status_of(store: RunStore, run_id: str) -> str:
    return store.get(run_id).status.value


def wait_status(store: RunStore, run_id: str, *wanted: str, timeout: float = 60) -> str:
    return wait_for(
        lambda: (s := status_of(store, run_id)) in wanted and s,
        timeout,
        what=f"{run_id} to be {'/'.join(wanted)}",
    )


def refused(done: subprocess.CompletedProcess[str], part: str) -> None:
    """One line ``error: ...`` naming ``part``, exit 2, no traceback."""
    assert done.returncode == 2, (done.args, done.stdout, done.stderr)
    line = done.stderr.strip()
    assert line.startswith("error: ") and "\n" not in line and part in line, (done.args, line)


def make_states(cli: Cli, store: RunStore, tmp_path: Path) -> dict[str, str]:
    """One run in each state, each the turn of session ``s-STATE``; plus two more
    waiting runs (``waiting-deny``, ``waiting-cancel``) for the commands that end a wait."""
    quick = str(write_script(tmp_path / "quick.json", [{"content": "done"}]))
    slow = str(write_script(tmp_path / "slow.json", [{"content": "thinking", "sleep": 900}]))
    crash = str(write_script(tmp_path / "crash.json", [{"content": "x", "crash": True}]))
    risky = [
        {"content": "asking", "tool": "shell", "args": {"command": "echo approved-ran"}},
        {"content": "finished"},
    ]
    asks = str(write_script(tmp_path / "asks.json", risky))
    runs = {"ended": cli.submit("--session", "s-ended", "--script", quick, "ended")}
    runs["suspended"] = cli.submit("--session", "s-suspended", "--script", crash, "crashes")
    for name in ("waiting", "waiting-deny", "waiting-cancel"):
        runs[name] = cli.submit(
            "--session", f"s-{name}", "--approve", "shell", "--script", asks, name
        )
    runs["queued"] = cli.submit("--session", "s-queued", "--queue", "idle", "--script", quick, "q")
    runs["running"] = cli.submit("--session", "s-running", "--queue", "slow", "--script", slow, "r")
    for name, run_id in runs.items():
        wait_status(store, run_id, shown(name))
    runs["unknown"] = UNKNOWN
    return runs


def check_reads(cli: Cli, store: RunStore, runs: dict[str, str]) -> None:
    """status, transcript, fork and follow (of the states follow does not wait in)."""
    cases = [(s, cmd) for s in STATES for cmd in ("status", "transcript", "fork")]
    cases += [(s, "follow") for s in ("waiting", "suspended", "ended", "unknown")]
    argv = {"status": ["--json"], "transcript": ["--json"], "fork": ["--at", "1"], "follow": []}
    results = run_all(cli, [[cmd, runs[s], *argv[cmd]] for s, cmd in cases])
    follow_codes = {"waiting": 5, "suspended": 4, "ended": 0}
    for (state, cmd), done in zip(cases, results, strict=True):
        if state == "unknown":
            refused(done, f"no such run: {UNKNOWN}")
            continue
        if cmd == "follow":
            assert done.returncode == follow_codes[state], (state, done.stdout, done.stderr)
            continue
        assert done.returncode == 0, (state, cmd, done.stderr)
        if cmd == "status":
            said = json.loads(done.stdout)["status"]
            assert said == shown(state), (state, said)
        elif cmd == "transcript":
            assert json.loads(done.stdout)[0] == {"role": "user", "content": store.get(
                runs[state]
            ).title}  # fmt: skip
        else:
            fork = done.stdout.strip()
            first = next(e for e in store.events(fork) if isinstance(e, MessageEvent))
            assert first.content == store.get(runs[state]).title, (state, fork)
            assert store.get(fork).session == ""


def check_refusals(cli: Cli, store: RunStore, runs: dict[str, str]) -> None:
    """approve and deny of what does not wait, purge of what has not ended, delete of a
    live session: one line each, and the run as it was. send to a live run queues the
    message (a waiting run keeps waiting)."""
    cases: list[tuple[str, list[str], str]] = []
    for state in ("queued", "running", "suspended", "ended"):
        cases += [(state, [cmd, runs[state]], f"is {shown(state)}") for cmd in ("approve", "deny")]
    for state in LIVE:
        cases.append((state, ["purge", runs[state]], f"is {state}, not ended: cancel it first"))
        cases.append((state, ["session", "delete", f"s-{state}"], "has a turn that has not ended"))
        cases.append((state, ["send", runs[state], f"note for {state}"], ""))
    for cmd in (["approve"], ["deny"], ["purge"], ["cancel"], ["send"]):
        cases.append(("unknown", [*cmd, UNKNOWN, *(["hi"] if cmd == ["send"] else [])], "no such"))
    cases.append(("unknown", ["session", "delete", "s-nope"], "no such session: s-nope"))
    cases.append(("unknown", ["session", "rename", "s-nope", "x"], "no such session: s-nope"))
    cases.append(("ended", ["cancel", runs["ended"]], "has already ended (succeeded)"))
    before = {s: status_of(store, runs[s]) for s in (*LIVE, "ended")}
    for (state, args, part), done in zip(
        cases, run_all(cli, [a for _, a, _ in cases]), strict=True
    ):
        if args[0] == "send" and state != "unknown":
            assert done.returncode == 0, (state, done.stderr)
            assert done.stdout.strip() == f"sent to {runs[state]}"
            inbox = store.redis.lrange(store.keys.inbox(runs[state]), 0, -1)
            assert f"note for {state}" in inbox or state == "running", (state, inbox)
        else:
            refused(done, part)
    for state, status in before.items():
        assert status_of(store, runs[state]) == status, f"{state} changed"


@pytest.mark.timeout(400)  # about 60 CLI processes on a shared 2-core machine
def test_every_command_against_every_state(cli: Cli, store: RunStore, tmp_path: Path) -> None:
    cli.env["RUNNER_MAX_DIRTY_RESTARTS"] = "0"  # a crash suspends the run at once
    cli.worker("w1")
    cli.worker("w2", queue="slow")
    runs = make_states(cli, store, tmp_path)
    assert store.get(runs["waiting"]).gate_tool == "shell"
    assert not store.redis.exists(store.keys.lease(runs["waiting"])), "the worker was freed"
    check_reads(cli, store, runs)
    # follow waits on a queued or a running run: until it is cancelled below (exit 3).
    followers = {
        s: subprocess.Popen(
            [*RUNNER, "follow", runs[s]],
            env=cli.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for s in ("queued", "running")
    }
    check_refusals(cli, store, runs)
    assert all(f.poll() is None for f in followers.values()), "follow returned early"

    # The session commands in each state: rename applies to all of them.
    renames = run_all(cli, [["session", "rename", f"s-{s}", f"r-{s}"] for s in (*LIVE, "ended")])
    for state, done in zip((*LIVE, "ended"), renames, strict=True):
        assert done.stdout.strip() == f"renamed session s-{state} to r-{state} (1 turns)", done
        assert store.get(runs[state]).session == f"r-{state}"

    # The commands that change the state, each once.
    sent = cli("send", runs["ended"], "once more")  # an ended run: the session's next turn
    assert sent.returncode == 0, sent.stderr
    assert f"session r-ended continues in {sent.stdout.strip()}" in sent.stderr
    nxt = sent.stdout.strip()
    changes = [
        ["approve", runs["waiting"]],
        ["deny", runs["waiting-deny"], "--reason", "not today"],
        *(["cancel", runs[s]] for s in ("queued", "running", "waiting-cancel", "suspended")),
    ]
    for args, done in zip(changes, run_all(cli, changes), strict=True):
        assert done.returncode == 0, (args, done.stderr)
    assert wait_status(store, nxt, "succeeded") == "succeeded"
    assert next(m for m in store.events(nxt) if isinstance(m, MessageEvent)).content == "once more"
    for state in ("queued", "running", "waiting-cancel", "suspended"):
        wait_status(store, runs[state], "cancelled")
    for state, follower in followers.items():
        assert follower.wait(timeout=60) == 3, state
    for state in ("waiting", "waiting-deny"):
        wait_status(store, runs[state], "succeeded")
    results = [
        m.content
        for s in ("waiting", "waiting-deny")
        for m in store.events(runs[s])
        if isinstance(m, MessageEvent) and m.role == "tool"
    ]
    assert results[0].startswith("approved-ran") and results[1] == "denied by user: not today"
    # Now ended: approving again, purging and deleting.
    refused(cli("approve", runs["waiting"]), "is succeeded, not waiting for an approval")
    purged = cli("purge", runs["ended"])
    assert purged.returncode == 0 and purged.stdout.startswith("purged 1 run ("), purged.stderr
    refused(cli("status", runs["ended"]), "no such run")
    deleted = cli("session", "delete", "r-ended")
    assert deleted.stdout.strip() == "deleted session r-ended (1 turns purged)", deleted.stderr
    refused(cli("status", nxt), "no such run")
    assert "r-ended" not in cli("sessions", "--json").stdout
    refused(cli("purge", "--older-than", "soon"), "not an age: 'soon'")
