"""Edges of one attempt: a message sent while queued, the workspace after the run ends.

Issue 10, points 6 (last sentence) and 8 (first half); real workers and CLI.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from runner.events import MessageEvent
from runner.store import RunStore
from tests.helpers import write_script


def transcript(cli: Any, run_id: str) -> list[dict[str, Any]]:
    done = cli("transcript", run_id, "--json")
    assert done.returncode == 0, done.stderr
    result: list[dict[str, Any]] = json.loads(done.stdout)
    return result


def test_send_to_a_queued_run_is_taken_in_before_the_first_model_call(
    cli: Any, store: RunStore, tmp_path: Path
) -> None:
    script = write_script(tmp_path / "s.json", [{"content": "one"}])
    run_id = cli.submit("--model", "scripted", "--script", str(script), "hello")
    sent = cli("send", run_id, "and mind the tests")  # no worker yet: the run is queued
    assert sent.returncode == 0, sent.stderr
    cli.worker("w1")
    done = cli("follow", run_id, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert [(m["role"], m["content"]) for m in transcript(cli, run_id)] == [
        ("user", "hello"),
        ("user", "and mind the tests"),
        ("assistant", "one"),
    ]


def test_a_runs_workspace_is_removed_when_it_ends(
    cli: Any, store: RunStore, tmp_path: Path, env: dict[str, str]
) -> None:
    steps = [
        {"content": "write", "tool": "shell", "args": {"command": "echo hi > note && pwd"}},
        {"content": "done"},
    ]
    script = write_script(tmp_path / "s.json", steps)
    cli.worker("w1")
    run_id = cli.submit("--model", "scripted", "--script", str(script), "go")
    done = cli("follow", run_id, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    workspace = Path(env["RUNNER_WORKSPACE_ROOT"]) / run_id
    results = [e.content for e in store.events(run_id) if isinstance(e, MessageEvent)]
    assert any(str(workspace) in r for r in results), results  # the turn worked in it
    assert not workspace.exists()
