"""``runner server status|stop`` for the embedded server, from a fresh HOME (issue 16.4)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import RUNNER


@pytest.fixture
def fresh_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """No RUNNER_REDIS_URL, a new HOME and data dir; kills a server left behind."""
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNNER_")}
    env.update(
        {
            "RUNNER_DATA_DIR": str(data),
            "RUNNER_WORKSPACE_ROOT": str(tmp_path / "workspaces"),
            "HOME": str(tmp_path / "home"),
            "NO_COLOR": "1",
            "COLUMNS": "200",
        }
    )
    yield env
    with contextlib.suppress(OSError, ValueError):
        os.kill(int((data / "valkey.pid").read_text().strip()), signal.SIGKILL)


def runner(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*RUNNER, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def test_demo_leaves_the_server_and_server_stop_stops_it(
    fresh_env: dict[str, str], tmp_path: Path
) -> None:
    data = Path(fresh_env["RUNNER_DATA_DIR"])
    before = runner(fresh_env, tmp_path, "server", "status")
    assert before.returncode == 0, before.stderr
    assert "embedded server: not running" in before.stdout

    demo = runner(fresh_env, tmp_path, "demo")
    assert demo.returncode == 0, demo.stdout + demo.stderr
    last = demo.stdout.strip().splitlines()[-1]
    port = json.loads((data / "server.json").read_text())["port"]
    assert f"The embedded server is still running (127.0.0.1:{port}" in last
    assert last.endswith("stop it with: runner server stop")

    status = runner(fresh_env, tmp_path, "server", "status")
    assert f"embedded server: running on 127.0.0.1:{port}" in status.stdout
    assert f"data directory: {data}" in status.stdout
    state = json.loads(runner(fresh_env, tmp_path, "server", "status", "--json").stdout)
    assert state["running"] is True and state["port"] == port
    assert state["data_dir"] == str(data)

    stopped = runner(fresh_env, tmp_path, "server", "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.startswith("embedded server stopped")
    after = runner(fresh_env, tmp_path, "server", "status", "--json")
    assert json.loads(after.stdout)["running"] is False
    again = runner(fresh_env, tmp_path, "server", "stop")
    assert again.stdout.startswith("embedded server was not running")
