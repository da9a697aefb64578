"""Tools end to end: a clean environment, cancel reaching a running tool, no leftovers."""

from __future__ import annotations

import json
import os
import secrets
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

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
    assert cli("cancel", run_id).returncode == 0
    start = time.monotonic()  # recorded: the heartbeat (every second) now stops the tool
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
    # What `env` printed: no RUNNER_* but the call's own effect id.
    runner_vars = [v for v in tools[0].content.splitlines() if "RUNNER_" in v]
    assert runner_vars == [f"RUNNER_EFFECT_ID={run_id}:call_0"]
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


ROOT = Path(__file__).resolve().parents[2]


def entry_point_site(tmp_path: Path) -> Path:
    """A directory holding an installed distribution's metadata with a ``runner.tools`` entry."""
    site = tmp_path / "site"
    dist = site / "runner_test_tools-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: runner-test-tools\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[runner.tools]\nhello = tests.user_tools:extra_tool\n")
    return site


def tool_messages(store: RunStore, run_id: str) -> list[MessageEvent]:
    return [e for e in store.events(run_id) if isinstance(e, MessageEvent) and e.role == "tool"]


def test_edit_file_user_tools_and_odd_output_through_a_worker(
    cli: Cli, store: RunStore, env: dict[str, str], tmp_path: Path
) -> None:
    worker_env = {
        **env,
        "PYTHONPATH": f"{ROOT}{os.pathsep}{entry_point_site(tmp_path)}",
        "RUNNER_TOOLS": "tests.user_tools:TOOLS",
        "RUNNER_TOOL_OUTPUT_BYTES": "2000",
    }
    cli.worker("w1", env=worker_env)
    text = "def f():\n    return 1\n\ndef g():\n    return 1\n"
    edit = "edit_file"
    steps: list[dict[str, Any]] = [
        {"content": "write", "tool": "write_file", "args": {"path": "m.py", "content": text}},
        {
            "content": "two",
            "tool": edit,
            "args": {"path": "m.py", "old_string": "return 1", "new_string": "return 2"},
        },
        {
            "content": "none",
            "tool": edit,
            "args": {"path": "m.py", "old_string": "return 3", "new_string": "x"},
        },
        {
            "content": "one",
            "tool": edit,
            "args": {
                "path": "m.py",
                "old_string": "g():\n    return 1",
                "new_string": "g():\n    return 2",
            },
        },
        {"content": "read", "tool": "read_file", "args": {"path": "m.py"}},
        {"content": "effect", "tool": "effect", "args": {"label": "L"}},
        {"content": "boom", "tool": "boom", "args": {"why": "on purpose"}},
        {"content": "ep", "tool": "extra_tool", "args": {"name": "you"}},
        {"content": "blob", "tool": "blob", "args": {"size": 4096}},
        {"content": "big", "tool": "big", "args": {"size": 100000}},
        {"content": "sh big", "tool": "shell", "args": {"command": "yes | head -c 50000"}},
        {
            "content": "sh bin",
            "tool": "shell",
            "args": {"command": "head -c 3000 /dev/urandom; printf '\\000'"},
        },
        {
            "content": "sh bad utf8",
            "tool": "shell",
            "args": {"command": "printf 'caf\\351 ok, mostly fine text here\\n'"},
        },
        {"content": "sh id", "tool": "shell", "args": {"command": "echo $RUNNER_EFFECT_ID"}},
        {"content": "done"},
    ]
    run_id = submit(cli, tmp_path, steps)
    assert wait_done(store, run_id, timeout=90).status is Status.SUCCEEDED
    out = [m.content for m in tool_messages(store, run_id)]
    assert len(out) == len(steps) - 1
    assert out[1].startswith("error: old_string occurs 2 times in m.py (lines 2, 5)")
    assert out[2] == "error: old_string not found in m.py: nothing was changed"
    assert out[3] == "edited m.py: replaced 1 occurrence at line 4"
    assert out[4] == "def f():\n    return 1\n\ndef g():\n    return 2\n"
    assert out[5] == f"L effect={run_id}:call_5"
    assert out[6] == "error: tool boom raised ZeroDivisionError: boom: on purpose"
    assert out[7] == "hello you from an entry point"
    assert out[8].startswith("[binary output: 4096 bytes, not shown as text; sha256 ")
    assert out[9].startswith("HEAD") and out[9].endswith("TAIL")
    assert "bytes trimmed ...]" in out[9] and len(out[9].encode()) < 2200
    assert "[... 48000 bytes trimmed]" in out[10]
    assert out[11].startswith("[binary output: 3001 bytes, not shown as text")
    assert out[12].startswith("caf\ufffd ok")
    assert out[13] == f"{run_id}:call_13\nexit code 0"
    # Everything committed reads back as valid events, and the CLI shows it.
    shown = cli("transcript", run_id)
    assert shown.returncode == 0 and "binary output" in shown.stdout


def test_a_worker_refuses_user_tools_that_do_not_load(cli: Cli, env: dict[str, str]) -> None:
    bad = {**env, "PYTHONPATH": str(ROOT), "RUNNER_TOOLS": "tests.user_tools:nothing_here"}
    done = cli("worker", "--burst", env=bad)
    assert done.returncode == 2
    assert done.stderr.strip() == "error: RUNNER_TOOLS: tests.user_tools has no nothing_here"


def pid_in(path: Path, timeout: float) -> int:
    """The pid a test MCP server's ``hang`` wrote to ``path`` (then removed)."""
    wait_for(path.exists, timeout, 0.05, what=f"{path.name} to appear")
    pid = int(path.read_text())
    path.unlink()
    return pid


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_an_mcp_server_is_called_killed_restarted_and_cancelled(
    cli: Cli, store: RunStore, env: dict[str, str], tmp_path: Path
) -> None:
    marker = f"mcp-marker-{secrets.token_hex(4)}"
    server = str(ROOT / "tests" / "mcp_server.py")
    config = {
        "mcpServers": {
            "demo": {
                "command": sys.executable,
                "args": [server, marker],
                "env": {"DEMO_FLAG": "on"},
            },
            "broken": {"command": f"/nonexistent/{marker}"},
        }
    }
    (tmp_path / "mcp.json").write_text(json.dumps(config))
    cli.worker("w1", env={**env, "RUNNER_MCP_CONFIG": str(tmp_path / "mcp.json")})
    steps: list[dict[str, Any]] = [
        {"content": "who", "tool": "demo__whoami", "args": {"note": "first"}},
        {"content": "fail", "tool": "demo__fail", "args": {"why": "no"}},
        {"content": "broken", "tool": "broken__anything", "args": {}},
        {"content": "hang", "tool": "demo__hang", "args": {"seconds": 300}},
        {"content": "who again", "tool": "demo__whoami", "args": {"note": "again"}},
        # The model thinks long enough for the test to kill the idle server meanwhile.
        {"content": "hang again", "tool": "demo__hang", "args": {"seconds": 300}, "sleep": 8},
        {"content": "never reached"},
    ]
    run_id = submit(cli, tmp_path, steps)
    pid_file = Path(env["RUNNER_WORKSPACE_ROOT"]) / run_id / "hang.pid"
    os.kill(pid_in(pid_file, 200), signal.SIGKILL)  # the server, mid-call
    idle = wait_for(
        lambda: (m := tool_messages(store, run_id))[4:] and m, 200, what="the 5th tool result"
    )
    os.kill(json.loads(idle[4].content)["pid"], signal.SIGKILL)  # the server, between calls
    pid_in(pid_file, 200)  # started again for the call, which hangs
    started = time.monotonic()
    assert cli("cancel", run_id).returncode == 0
    record = wait_done(store, run_id, timeout=30)
    assert record.status is Status.CANCELLED, record
    assert time.monotonic() - started < 10
    out = [m.content for m in tool_messages(store, run_id)]
    first, again = json.loads(out[0]), json.loads(out[4])
    workspace = os.path.realpath(Path(env["RUNNER_WORKSPACE_ROOT"]) / run_id)
    assert first["cwd"] == workspace and first["flag"] == "on" and first["runner_vars"] == []
    assert first["effect_id"] == f"{run_id}:call_0" and again["effect_id"] == f"{run_id}:call_4"
    assert out[1].startswith("error: ") and "refused: no" in out[1]
    assert out[2].startswith(
        "error: MCP server broken is not running: it exited before it answered"
    )
    assert marker in out[2]  # the reaper's own line: cannot run /nonexistent/...
    assert (
        out[3]
        == "error: MCP server demo died during the call; it is started again for the next call"
    )
    assert again["pid"] != first["pid"]
    assert out[5].startswith("interrupted by a stop (cancel): the call to MCP server demo")
    # Every server process (and reaper) went with the turn.
    wait_for(lambda: not marked_pids(marker), 15, 0.1, what="the MCP servers to exit")


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_a_handoff_mid_mcp_call_ends_its_servers_and_the_turn_goes_on(
    cli: Cli, store: RunStore, env: dict[str, str], tmp_path: Path
) -> None:
    marker = f"mcp-marker-{secrets.token_hex(4)}"
    server = str(ROOT / "tests" / "mcp_server.py")
    config = {"mcpServers": {"demo": {"command": sys.executable, "args": [server, marker]}}}
    (tmp_path / "mcp.json").write_text(json.dumps(config))
    worker_env = {**env, "RUNNER_MCP_CONFIG": str(tmp_path / "mcp.json")}
    w1 = cli.worker("w1", env=worker_env)
    steps = [
        {"content": "hang", "tool": "demo__hang", "args": {"seconds": 300}},
        {"content": "done"},
    ]
    run_id = submit(cli, tmp_path, steps)
    pid_in(Path(env["RUNNER_WORKSPACE_ROOT"]) / run_id / "hang.pid", 200)
    w1.signal_group(signal.SIGTERM)
    assert w1.wait(15) == 0  # within the grace (3 s) and a loaded host's margin
    wait_for(lambda: not marked_pids(marker), 10, 0.1, what="the MCP server to exit")
    cli.worker("w2", env=worker_env)
    assert wait_done(store, run_id, timeout=120).status is Status.SUCCEEDED
    out = [m.content for m in tool_messages(store, run_id)]
    assert out[0].startswith("interrupted by a stop (handoff): the call to MCP server demo")
    assert len(out) == 1  # the interrupted call is not run again: hang is not idempotent
