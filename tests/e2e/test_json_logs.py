"""``RUNNER_LOG_FORMAT=json``: a worker's log is one JSON object per line (issue 16.2)."""

from __future__ import annotations

import json
import signal

from tests.helpers import write_script


def test_a_workers_json_log_parses_line_by_line_with_the_run_fields(cli, env, tmp_path) -> None:
    json_env = {**env, "RUNNER_LOG_FORMAT": "json", "OPENAI_API_KEY": "sk-logtest-" + "y" * 30}
    worker = cli.worker("jw", env=json_env)
    steps = [
        {"content": "one", "tool": "shell", "args": {"command": "echo a"}},
        {"content": "two", "tool": "shell", "args": {"command": "echo b"}},
        {"content": "done"},
    ]
    script = write_script(tmp_path / "s.json", steps)
    run_id = cli.submit("--model", "scripted", "--script", str(script), "hi")
    assert cli("follow", run_id).returncode == 0
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0

    text = worker.output()
    entries = [json.loads(line) for line in text.splitlines()]  # every line, or it fails
    assert entries
    for entry in entries:
        assert {"ts", "level", "logger", "event"} <= entry.keys(), entry
    turn = [e for e in entries if e.get("run") == run_id and e["logger"] == "runner.turn"]
    assert [e["event"] for e in turn] == ["attempt started", "attempt ended"]
    # Once claimed, every line of the turn carries the run, its epoch, worker and queue.
    started = entries.index(turn[0])
    ended = entries.index(turn[-1])
    for entry in entries[started : ended + 1]:
        assert entry["run"] == run_id, entry
        assert entry["epoch"] == 1, entry
        assert entry["worker"] == "jw", entry
        assert entry["queue"] == "default", entry
    assert turn[-1]["status"] == "succeeded"
    assert "sk-logtest" not in text
