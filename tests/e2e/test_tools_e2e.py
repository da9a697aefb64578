"""Tools end to end: a clean environment, cancel reaching a running tool, no leftovers."""

from __future__ import annotations

import os
import secrets
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.events import MessageEvent, Status
from runner.store import RunRecord, RunStore
from tests.helpers import wait_for, write_script

if TYPE_CHECKING:
    from tests.conftest import Cli


def marked_pids(marker: str) -> list[int]:
    """PIDs whose command line holds ``marker``."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if marker.encode() in cmdline.read_bytes():
                pids.append(int(cmdline.parent.name))
        except OSError:
            continue
    return pids


def submit(cli: Cli, tmp_path: Path, steps: list[dict[str, Any]]) -> str:
    script = write_script(tmp_path / f"script-{secrets.token_hex(3)}.json", steps)
    return cli.submit("--model", "scripted", "--script", str(script), "go")


def wait_done(store: RunStore, run_id: str, timeout: float = 30) -> RunRecord:
    return wait_for(
        lambda: (r := store.get(run_id)).terminal and r, timeout, what=f"run {run_id} to end"
    )


def test_cancel_stops_a_running_tool(
    cli: Cli, store: RunStore, env: dict[str, str], tmp_path: Path
) -> None:
    marker = f"300.{secrets.randbelow(10**9):09d}"
    steps = [{"content": "wait", "tool": "shell", "args": {"command": f"sleep {marker}"}}]
    # The default lease: how often the heartbeat looks for a cancel must not depend on it.
    cli.worker("w1", env={**env, "RUNNER_LEASE_SECONDS": "15"})
    run_id = submit(cli, tmp_path, steps)
    wait_for(lambda: marked_pids(marker), 20, 0.02, what="the tool's sleep to start")
    start = time.monotonic()
    assert cli("cancel", run_id).returncode == 0
    record = wait_done(store, run_id, timeout=20)
    ended_after = time.monotonic() - start
    assert record.status is Status.CANCELLED
    assert ended_after < 3, ended_after
    assert not marked_pids(marker)
    tool = [e for e in store.events(run_id) if isinstance(e, MessageEvent) and e.role == "tool"]
    assert "interrupted by a stop (cancel)" in tool[-1].content


FAKE_KEY = "sk-test-" + "Zq9" * 12
HIDDEN = {
    "OPENAI_API_KEY": FAKE_KEY,
    "RUNNER_OPENAI_API_KEY": "sk-test-runner-" + "Yw8" * 10,
    "RUNNER_CANARY": "runner-canary-value-0001",
    "UNLISTED_CANARY": "unlisted-canary-value-0002",
}


def test_a_tool_running_env_sees_no_secret(
    cli: Cli, store: RunStore, env: dict[str, str], tmp_path: Path
) -> None:
    worker_env = {
        **env,
        **HIDDEN,
        "LISTED_FLAG": "listed-value-0003",
        # Named, but RUNNER_* and provider keys never reach a tool.
        "RUNNER_TOOL_ENV": "LISTED_FLAG,OPENAI_API_KEY,RUNNER_CANARY,RUNNER_REDIS_URL",
    }
    cli.worker("w1", env=worker_env)
    # The second step hunts for the key wherever this user may read an environment.
    hunt = "cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n' | grep -a API_KEY=; true"
    steps = [
        {"content": "look", "tool": "shell", "args": {"command": "env"}},
        {"content": "hunt", "tool": "shell", "args": {"command": hunt}},
        {"content": "ok"},
    ]
    run_id = submit(cli, tmp_path, steps)
    assert wait_done(store, run_id).status is Status.SUCCEEDED
    entries = store.redis.xrange(store.keys.events(run_id))
    raw = "\n".join(str(v) for _id, fields in entries for v in fields.values())
    assert "LISTED_FLAG=listed-value-0003" in raw
    for name, value in HIDDEN.items():
        assert value not in raw, name
    assert env["RUNNER_REDIS_URL"] not in raw
    tools = [e for e in store.events(run_id) if isinstance(e, MessageEvent) and e.role == "tool"]
    assert "RUNNER_" not in tools[0].content  # what `env` printed: no RUNNER_* at all
    # Found where it was hunted for, the key is masked: as root, /proc is all readable.
    assert os.geteuid() != 0 or "OPENAI_API_KEY=[redacted]" in tools[1].content


def test_nothing_of_a_tool_outlives_a_sigkilled_worker(
    cli: Cli, store: RunStore, tmp_path: Path
) -> None:
    marker = f"300.{secrets.randbelow(10**9):09d}"
    # setsid: out of the tool's process group and session, as far as a command can get.
    command = f"setsid sh -c 'sleep {marker}' & sleep {marker}"
    worker = cli.worker("w1")
    run_id = submit(
        cli, tmp_path, [{"content": "hang", "tool": "shell", "args": {"command": command}}]
    )
    wait_for(lambda: len(marked_pids(marker)) >= 3, 20, 0.02, what="the tool's sleeps to start")
    worker.signal_group(signal.SIGKILL)
    worker.wait(10)
    wait_for(lambda: not marked_pids(marker), 5, 0.05, what="every process of the tool to die")
    assert store.get(run_id).status is Status.RUNNING  # until its lease expires
