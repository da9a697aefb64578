"""The CLI imports a command's module only when that command runs (issue 12: reattach).

``runner follow`` on a finished run must cost about what reading its stream does, so
its process must not load RQ, rich or the other commands; the table that says which
module holds which command must name every command there is.
"""

from __future__ import annotations

import io
import os
import pty
import subprocess
import sys

import pytest
from rich.console import Console

from runner.cli import group
from runner.cli.following import is_terminal

LOADED = """
import sys
from runner.cli import cli
cli.get_command(None, {command!r})
print(" ".join(sorted(sys.modules)))
"""


def _modules_after(command: str) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", LOADED.format(command=command)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return set(done.stdout.split())


def test_the_table_names_every_command_and_its_module() -> None:
    group.load_all()
    registered = {
        name: (command.callback.__module__ if command.callback else "")
        for name, command in group.cli.commands.items()
    }
    # guarded() keeps the command's own module; groups (server, session, token) have theirs.
    assert set(registered) == set(group.COMMANDS)
    for name, module in group.COMMANDS.items():
        assert registered[name] == f"runner.cli.{module}", name


def test_follow_loads_neither_rq_nor_rich_nor_other_commands() -> None:
    loaded = _modules_after("follow")
    assert "runner.cli.runs" in loaded
    heavy = {m.split(".")[0] for m in loaded} & {"rq", "rich", "workers"}
    assert heavy == set()
    others = {f"runner.cli.{m}" for m in group.MODULES} - {"runner.cli.runs", "runner.cli.parking"}
    assert loaded & others == set()
    # redis-py's own OpenTelemetry metrics, which runner never turns on, are left out.
    assert "redis" in loaded and "opentelemetry.sdk.metrics" not in loaded


def test_the_metrics_sdk_still_imports_after_the_cli() -> None:
    code = "import runner.cli, opentelemetry.sdk.metrics, runner.tracing; print('ok')"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "ok"


def test_help_still_lists_every_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "runner", "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    listed = {line.split()[0] for line in done.stdout.split("Commands:")[1].splitlines() if line}
    assert listed == set(group.COMMANDS)


def test_an_unknown_command_is_one_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "runner", "nosuch"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("error: No such command 'nosuch'")
    assert len(done.stderr.strip().splitlines()) == 1


ENVS = [
    {},
    {"FORCE_COLOR": "1"},
    {"FORCE_COLOR": ""},
    {"TTY_COMPATIBLE": "1"},
    {"TTY_COMPATIBLE": "0"},
    {"TTY_COMPATIBLE": "0", "FORCE_COLOR": "1"},
    {"TTY_COMPATIBLE": "x", "FORCE_COLOR": "1"},
    {"NO_COLOR": "1"},
]


@pytest.mark.parametrize("env", ENVS, ids=[" ".join(e) or "none" for e in ENVS])
@pytest.mark.parametrize("where", ["pipe", "tty", "closed"])
def test_is_terminal_agrees_with_rich(
    env: dict[str, str], where: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "NO_COLOR", "TTY_INTERACTIVE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    if where == "tty":
        leader, follower = pty.openpty()
        stream = open(follower, "w")  # noqa: SIM115 - closed below
        os.close(leader)
    else:
        stream = io.StringIO()  # no isatty: a pipe as far as either is concerned
        if where == "closed":
            stream.close()
    try:
        assert is_terminal(stream) == Console(file=stream).is_terminal
    finally:
        stream.close()
