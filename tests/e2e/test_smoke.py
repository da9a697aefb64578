"""The first slice end to end: submit, a worker subprocess, follow to the end."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import step_script, write_script


def test_submit_run_follow(cli, tmp_path: Path) -> None:
    script = write_script(tmp_path / "s.json", step_script(2))
    run_id = cli.submit("--model", "scripted", "--script", str(script), "hello")
    cli.worker("w1")
    done = cli("follow", run_id, "--json")
    assert done.returncode == 0, done.stderr
    assert '"status":"succeeded"' in done.stdout
