"""Issue 15, point 5: the CLI through ``runner serve`` (RUNNER_API_URL), without Redis.

The CLI's own RUNNER_REDIS_URL points at a closed port: every command below works
only because it goes through the API, and prints and exits as it does over Redis.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Cli
from tests.helpers import step_script, write_script
from tests.serving import free_port, make_api

pytest.importorskip("httpx")


def test_cli_over_http_matches_the_cli_over_redis(cli: Cli, tmp_path: Path) -> None:
    api = make_api(cli)
    remote = {
        **cli.env,
        "RUNNER_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",  # nothing listens
        "RUNNER_API_URL": api.url,
        "RUNNER_API_TOKEN": api.token,
    }
    script = write_script(tmp_path / "s.json", step_script(2, sleep=0.2))
    done = cli("submit", "--model", "scripted", "--script", str(script), "hi", env=remote)
    assert done.returncode == 0, done.stderr
    run_id = done.stdout.strip()
    cli.worker("w1")
    over_http = cli("follow", run_id, "--json", env=remote)
    assert over_http.returncode == 0, over_http.stderr
    direct = cli("follow", run_id, "--json")
    # Followed live, --json also prints the text in flight: ephemeral lines, each once.
    lines = over_http.stdout.splitlines(keepends=True)
    ephemeral = [line for line in lines if json.loads(line).get("ephemeral")]
    assert len(set(ephemeral)) == len(ephemeral), "a delta printed twice"
    assert "".join(line for line in lines if line not in ephemeral) == direct.stdout
    for args in (["status", run_id, "--json"], ["transcript", run_id, "--json"], ["list"]):
        ours, theirs = cli(*args, env=remote), cli(*args)
        assert (ours.returncode, ours.stdout) == (theirs.returncode, theirs.stdout), args
    # (send to an ended run starts its session's next turn, directly only: not compared)
    unknown = "r0000000000deadbeef"
    for args in (["cancel", run_id], ["send", unknown, "more"], ["status", unknown]):
        ours, theirs = cli(*args, env=remote), cli(*args)
        assert (ours.returncode, ours.stderr) == (theirs.returncode, theirs.stderr), args
    assert json.loads(cli("status", run_id, "--json", env=remote).stdout)["status"] == "succeeded"
    reader = {**remote, "RUNNER_API_TOKEN": api.reader}
    refused = cli("cancel", run_id, env=reader)
    assert refused.returncode == 2 and "read-only" in refused.stderr
