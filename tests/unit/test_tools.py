"""Tools: the shell's process handling and the workspace confinement of file tools."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from workers.stop import Stop
from workers.tools import TOOLS, ToolContext, ToolResult, run_tool, specs
from workers.tools.env import tool_env


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    return workspace


def make_ctx(
    ws: Path, stop: Stop | None = None, timeout: float = 10, cap: int = 1000
) -> ToolContext:
    # Not ``stop or ...``: a Stop is falsy until requested.
    stop = Stop(grace=5) if stop is None else stop
    return ToolContext(workspace=ws, stop=stop, timeout=timeout, output_bytes=cap)


def shell(ctx: ToolContext, command: str) -> ToolResult:
    return run_tool("shell", {"command": command}, ctx)


def wait_for(check: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll ``check`` until it holds or the deadline passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return check()


def live_members(pgid: int) -> list[int]:
    """Pids of the non-zombie processes in process group ``pgid``."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # Fields after the ")" that closes the command name: state, ppid, pgrp, ...
        state, _ppid, pgrp = stat.rsplit(")", 1)[1].split()[:3]
        if int(pgrp) == pgid and state != "Z":
            pids.append(int(entry))
    return pids


# ---------------------------------------------------------------------------- shell


def test_shell_runs_in_the_workspace(ws: Path) -> None:
    result = shell(make_ctx(ws), "pwd; echo oops >&2; exit 3")
    lines = result.content.splitlines()
    assert lines[0] == os.path.realpath(ws)
    assert "oops" in lines
    assert lines[-1] == "exit code 3"
    assert not result.interrupted


def test_shell_has_no_stdin(ws: Path) -> None:
    result = shell(make_ctx(ws), "cat; echo after")
    assert result.content.splitlines() == ["after", "exit code 0"]


def test_shell_output_is_capped_at_the_head(ws: Path) -> None:
    result = shell(make_ctx(ws, cap=1000), "head -c 5000 /dev/zero | tr '\\0' a")
    assert result.content.startswith("a" * 1000 + "\n[... 4000 bytes trimmed]")
    assert result.content.endswith("exit code 0")


def test_chatty_shell_does_not_deadlock(ws: Path) -> None:
    result = shell(make_ctx(ws, cap=300), "yes | head -c 3000000; echo end >&2")
    assert "[... 2999704 bytes trimmed]" in result.content  # 3 MB of "y\n", then "end\n"
    assert result.content.endswith("exit code 0")


def test_shell_timeout_kills_the_whole_group(ws: Path) -> None:
    started = time.monotonic()
    result = shell(make_ctx(ws, timeout=0.5), "echo $$; sleep 60 & sleep 60")
    assert time.monotonic() - started < 5
    assert "timed out after 0.5 s" in result.content
    assert not result.interrupted
    pgid = int(result.content.splitlines()[0])
    assert wait_for(lambda: not live_members(pgid)), live_members(pgid)


def test_background_children_do_not_hold_the_call(ws: Path) -> None:
    started = time.monotonic()
    result = shell(make_ctx(ws), "echo $$; sleep 60 & echo bg")
    assert time.monotonic() - started < 5
    assert result.content.splitlines()[1:] == ["bg", "exit code 0"]
    pgid = int(result.content.splitlines()[0])
    assert wait_for(lambda: not live_members(pgid))


def test_shell_in_hurry_is_interrupted_at_once(ws: Path) -> None:
    stop = Stop(grace=30)
    stop.request("cancel")  # anything but a handoff means "now"
    assert stop.time_left() == 0
    started = time.monotonic()
    result = shell(make_ctx(ws, stop=stop), "echo $$; sleep 30")
    assert time.monotonic() - started < 2
    assert result.interrupted
    assert "interrupted by a stop (cancel)" in result.content


def test_stop_during_a_command_interrupts_it(ws: Path) -> None:
    stop = Stop(grace=30)

    def cancel_once_started() -> None:
        if wait_for((ws / "started").exists):
            stop.request("cancel")

    thread = threading.Thread(target=cancel_once_started)
    thread.start()
    started = time.monotonic()
    result = shell(make_ctx(ws, stop=stop), "touch started; sleep 30; touch finished")
    thread.join()
    assert time.monotonic() - started < 5
    assert result.interrupted
    assert not (ws / "finished").exists()


def test_handoff_deadline_is_honoured(ws: Path) -> None:
    stop = Stop(grace=0.8)  # in-flight deadline: 0.8 s minus a 0.2 s margin
    stop.request("handoff")
    started = time.monotonic()
    result = shell(make_ctx(ws, stop=stop), "sleep 3; touch finished")
    elapsed = time.monotonic() - started
    assert result.interrupted
    assert "interrupted by a stop (handoff)" in result.content
    assert 0.3 < elapsed < 2.5
    assert not (ws / "finished").exists()


def test_command_within_the_grace_finishes(ws: Path) -> None:
    stop = Stop(grace=10)
    stop.request("handoff")
    result = shell(make_ctx(ws, stop=stop), "echo quick")
    assert result == ToolResult("quick\nexit code 0")


# ---------------------------------------------------------------------------- files


def test_nested_paths_work(ws: Path) -> None:
    ctx = make_ctx(ws)
    wrote = run_tool("write_file", {"path": "a/b/c.txt", "content": "héllo\n"}, ctx)
    assert wrote.content == "wrote 7 bytes to a/b/c.txt"
    assert run_tool("read_file", {"path": "a/b/c.txt"}, ctx).content == "héllo\n"
    assert run_tool("read_file", {"path": "./a//b/c.txt"}, ctx).content == "héllo\n"
    assert run_tool("list_dir", {"path": "a/b"}, ctx).content == "c.txt"
    assert run_tool("list_dir", {}, ctx).content == "a/"


def test_symlinks_inside_the_workspace_are_followed(ws: Path) -> None:
    (ws / "real").mkdir()
    (ws / "real" / "f.txt").write_text("inside")
    (ws / "alias").symlink_to(ws / "real")
    ctx = make_ctx(ws)
    assert run_tool("read_file", {"path": "alias/f.txt"}, ctx).content == "inside"
    assert run_tool("list_dir", {}, ctx).content == "alias@\nreal/"
    run_tool("write_file", {"path": "alias/g.txt", "content": "x"}, ctx)
    assert (ws / "real" / "g.txt").read_text() == "x"


@pytest.fixture
def escapes(ws: Path, tmp_path: Path) -> Path:
    """Links inside the workspace that lead out of it."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    (ws / "etc").symlink_to("/etc")
    (ws / "out").symlink_to(outside)
    (ws / "secret.txt").symlink_to(outside / "secret.txt")
    (ws / "dangling.txt").symlink_to(outside / "new.txt")
    return outside


REFUSED = [
    "../x",
    "/etc/passwd",
    "a/../../x",
    "a/../x",
    "etc/passwd",
    "out/secret.txt",
    "secret.txt",
    "dangling.txt",
    "",
]


@pytest.mark.usefixtures("escapes")
@pytest.mark.parametrize("path", REFUSED)
def test_paths_outside_the_workspace_are_refused_for_reading(ws: Path, path: str) -> None:
    for tool in ("read_file", "list_dir"):
        result = run_tool(tool, {"path": path}, make_ctx(ws))
        assert result.content.startswith("error: "), (tool, result)
        assert "secret" not in result.content.removeprefix(f"error: path {path!r}")


@pytest.mark.parametrize("path", REFUSED)
def test_paths_outside_the_workspace_are_refused_for_writing(
    ws: Path, escapes: Path, path: str
) -> None:
    result = run_tool("write_file", {"path": path, "content": "pwned"}, make_ctx(ws))
    assert result.content.startswith("error: ")
    assert (escapes / "secret.txt").read_text() == "secret"
    assert not (escapes / "new.txt").exists()
    assert not (ws.parent / "x").exists()


def test_refusals_say_why(ws: Path) -> None:
    ctx = make_ctx(ws)
    (ws / "etc").symlink_to("/etc")
    assert "absolute path" in run_tool("read_file", {"path": "/etc/passwd"}, ctx).content
    assert "'..'" in run_tool("read_file", {"path": "../x"}, ctx).content
    assert "outside the workspace" in run_tool("read_file", {"path": "etc/passwd"}, ctx).content


def test_read_file_is_capped(ws: Path) -> None:
    (ws / "big.txt").write_text("b" * 5000)
    result = run_tool("read_file", {"path": "big.txt"}, make_ctx(ws, cap=1000))
    assert result.content == "b" * 1000 + "\n[... 4000 bytes trimmed]"


def test_file_errors_come_back_as_content(ws: Path) -> None:
    ctx = make_ctx(ws)
    (ws / "d").mkdir()
    os.mkfifo(ws / "fifo")
    assert "No such file" in run_tool("read_file", {"path": "nope.txt"}, ctx).content
    assert "directory" in run_tool("read_file", {"path": "d"}, ctx).content
    assert "not a regular file" in run_tool("read_file", {"path": "fifo"}, ctx).content
    assert "directory" in run_tool("write_file", {"path": "d", "content": ""}, ctx).content
    assert "not a directory" in run_tool("list_dir", {"path": "fifo"}, ctx).content


# ---------------------------------------------------------------------------- dispatch


@pytest.mark.parametrize(
    ("name", "args", "expected"),
    [
        ("rm_rf", {}, "error: unknown tool 'rm_rf'; known tools: shell, read_file"),
        ("shell", {}, "error: missing argument 'command'"),
        ("shell", {"command": 3}, "error: argument 'command' must be a string, not int"),
        ("shell", {"command": "ls", "cwd": "/"}, "error: unknown argument(s): cwd"),
        ("write_file", {"path": "x"}, "error: missing argument 'content'"),
    ],
)
def test_bad_calls_are_errors_for_the_model(
    ws: Path, name: str, args: dict[str, object], expected: str
) -> None:
    result = run_tool(name, args, make_ctx(ws))
    assert result.content.startswith(expected)
    assert not result.interrupted


def test_specs_describe_every_tool() -> None:
    described = specs()
    assert [s.name for s in described] == [
        "shell",
        "read_file",
        "write_file",
        "edit_file",
        "list_dir",
    ]
    assert all(s.description and s.parameters["type"] == "object" for s in described)
    assert {n for n, t in TOOLS.items() if t.idempotent} == {"read_file", "list_dir"}


# ---------------------------------------------------------------------------- hardening


def in_thread(fn: Callable[[], ToolResult], timeout: float = 5) -> ToolResult | None:
    """``fn()`` in a daemon thread: its result, or None if it is still blocked at ``timeout``."""
    results: list[ToolResult] = []
    thread = threading.Thread(target=lambda: results.append(fn()), daemon=True)
    thread.start()
    thread.join(timeout)
    return results[0] if results else None


def test_file_tools_never_block_on_a_fifo(ws: Path) -> None:
    ctx = make_ctx(ws)
    os.mkfifo(ws / "fifo")
    (ws / "link").symlink_to(ws / "fifo")
    for tool, args in [
        ("write_file", {"path": "fifo", "content": "x"}),
        ("write_file", {"path": "link", "content": "x"}),
        ("read_file", {"path": "fifo"}),
        ("read_file", {"path": "link"}),
    ]:
        result = in_thread(lambda t=tool, a=args: run_tool(t, a, ctx))  # type: ignore[misc]
        assert result is not None, f"{tool} {args} blocked"
        assert result.content == f"error: {args['path']!r} is not a regular file", result


SECRETS = {
    "RUNNER_REDIS_URL": "redis://:hunter2-password@10.0.0.1:6379/0",
    "OPENAI_API_KEY": "sk-test-abcdefghijklmnopqrstuvwxyz",
    "RUNNER_OPENAI_API_KEY": "sk-test-runner-abcdefghijklmnop",
}


def test_shell_gets_a_clean_environment(ws: Path) -> None:
    source = {
        **SECRETS,
        "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "AWS_SECRET_ACCESS_KEY": "not-named-so-not-passed",
        "PROJECT_FLAG": "named",
    }
    names = ("PROJECT_FLAG", "OPENAI_API_KEY", "RUNNER_REDIS_URL")  # the last two: never
    ctx = make_ctx(ws)
    ctx.env = tool_env(source, names)
    result = shell(ctx, "env")
    lines = set(result.content.splitlines())
    assert {"PATH=/usr/bin:/bin", "LANG=C.UTF-8", "PROJECT_FLAG=named"} <= lines
    assert f"HOME={ws}" in lines
    for value in (*SECRETS.values(), "not-named-so-not-passed"):
        assert value not in result.content
    names_seen = {line.split("=", 1)[0] for line in lines if "=" in line}
    assert not {n for n in names_seen if n.startswith("RUNNER_") or n.startswith("OPENAI")}


def test_the_default_tool_environment_is_not_the_workers(
    ws: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    result = shell(make_ctx(ws), "env")
    for value in SECRETS.values():
        assert value not in result.content


def marked(marker: str) -> list[int]:
    """Live PIDs whose command line holds ``marker``."""
    pids = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if marker.encode() in (entry / "cmdline").read_bytes():
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z":
                    pids.append(int(entry.name))
        except OSError:
            continue
    return pids


@pytest.mark.parametrize(
    "command",
    [
        "setsid sh -c 'sleep {m}' & sleep 0.2",
        "(setsid sh -c '(sleep {m} &) ; sleep {m}' &) ; sleep 0.2",
        "nohup sleep {m} >/dev/null 2>&1 & sleep 0.2",
    ],
    ids=["setsid", "setsid-double-fork", "nohup"],
)
def test_nothing_the_command_started_outlives_it(ws: Path, command: str) -> None:
    marker = f"300.{time.monotonic_ns() % 10**9:09d}"
    result = shell(make_ctx(ws), command.format(m=marker))
    assert result.content.endswith("exit code 0"), result
    assert wait_for(lambda: not marked(marker)), marked(marker)


def test_nothing_is_left_after_a_timeout_either(ws: Path) -> None:
    marker = f"300.{time.monotonic_ns() % 10**9:09d}"
    result = shell(make_ctx(ws, timeout=1), f"setsid sh -c 'sleep {marker}' & sleep {marker}")
    assert "timed out after 1 s" in result.content
    assert wait_for(lambda: not marked(marker)), marked(marker)


def test_a_cancel_during_a_handoff_ends_the_run_cancelled(ws: Path) -> None:
    stop = Stop(grace=30)
    stop.request("handoff")
    stop.request("cancel")  # the user cancels while the turn hands off: cancel wins
    result = shell(make_ctx(ws, stop=stop), "sleep 30")
    assert result.interrupted
    assert "interrupted by a stop (cancel)" in result.content
    stop.request("handoff")
    assert stop.reason == "cancel"
    stop.request("fenced")
    assert stop.reason == "fenced"


def test_the_workers_secrets_are_masked_in_what_a_tool_returns(
    ws: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = "worker-key-not-shaped-like-one"
    monkeypatch.setenv("OPENAI_API_KEY", key)
    (ws / "found.txt").write_text(f"somehow found: {key}\npassword = 'placeholder-kept'\n")
    ctx = make_ctx(ws)
    read = run_tool("read_file", {"path": "found.txt"}, ctx).content
    assert read == "somehow found: [redacted]\npassword = 'placeholder-kept'\n"
    assert key not in shell(ctx, "cat found.txt").content


def test_a_registered_tool_is_described_and_callable(ws: Path) -> None:
    from typing import Any, ClassVar

    from workers import tools

    class Echo(tools.Tool):
        name = "echo_args"
        idempotent = True
        description = "Echo the arguments."
        parameters: ClassVar[dict[str, Any]] = {"type": "object", "properties": {}}

        def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
            return ToolResult(repr(sorted(args)))

    tools.register(Echo())
    try:
        assert specs()[-1] == tools.ToolSpec("echo_args", "Echo the arguments.", Echo.parameters)
        assert run_tool("echo_args", {"b": 1, "a": 2}, make_ctx(ws)).content == "['a', 'b']"
    finally:
        tools.unregister("echo_args")
