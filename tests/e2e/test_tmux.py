"""Issue 12, tried as a person would: ``runner follow`` in a real terminal (tmux).

The streamed answer visibly grows in place, the committed message replaces it, and
Ctrl-C detaches saying how to reattach. Skips where tmux is not installed.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_core import submit
from tests.helpers import RUNNER, wait_for, write_script

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
]
WORDS = " ".join(f"word{i}" for i in range(150))


def _screen(socket: Path) -> str:
    done = subprocess.run(
        ["tmux", "-S", str(socket), "capture-pane", "-p", "-t", "follow"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout


def _newest_word(screen: str) -> int:
    """The highest ``wordN`` on screen (-1 if none)."""
    found = [int(w[4:]) for w in screen.split() if w.startswith("word") and w[4:].isdigit()]
    return max(found, default=-1)


def test_follow_in_a_terminal_grows_the_text_then_commits_and_detaches(
    cli: Any, env: dict[str, str], tmp_path: Path
) -> None:
    steps = [
        {
            "content": "First. " + WORDS,
            "tool": "shell",
            "args": {"command": "echo hi"},
            "sleep": 20,
        },
        {"content": "Second " + WORDS, "sleep": 60},
    ]
    cli.worker("w1")
    run_id = submit(cli, write_script(tmp_path / "s.json", steps))
    socket = tmp_path / "tmux.sock"
    command = " ".join(shlex.quote(a) for a in [*RUNNER, "follow", run_id])
    # The terminal's own size and colours, as a person's would be.
    variables = [
        f"{k}={shlex.quote(v)}" for k, v in env.items() if k not in ("NO_COLOR", "COLUMNS")
    ]
    shell = f"env {' '.join(variables)} {command}; echo EXIT=$?; sleep 120"
    size = ["-x", "100", "-y", "40"]
    tmux = ["tmux", "-S", str(socket)]
    subprocess.run([*tmux, "new-session", "-d", "-s", "follow", *size, shell], check=True)
    try:
        # Growing in place: while the answer is drawn, its newest word on screen goes up.
        def drawn() -> int | None:
            screen = _screen(socket)
            streaming = "assistant … " in screen and "shell: echo hi" not in screen
            return _newest_word(screen) + 1 if streaming else None  # before the commit only

        first = wait_for(drawn, 60, 0.1, "the streamed text") - 1
        # Past the first rows: a long line must wrap in the drawing, not be cropped to one row.
        wait_for(lambda: (drawn() or 0) > max(first + 10, 40), 30, 0.1, "the text to grow")
        # The commit replaces the drawing: the message once, as a log line, no "…" left.
        wait_for(lambda: "shell: echo hi" in _screen(socket), 60, 0.1, "the committed step")
        screen = _screen(socket)
        assert screen.count("First. word0") == 1 and "assistant … First." not in screen
        wait_for(lambda: "assistant … Second" in _screen(socket), 60, 0.1, "the next answer")
        subprocess.run(["tmux", "-S", str(socket), "send-keys", "-t", "follow", "C-c"], check=True)
        wait_for(lambda: "EXIT=130" in _screen(socket), 30, 0.1, "the detach")
        screen = _screen(socket)
        assert f"Reattach with: runner follow {run_id}" in screen
        assert "assistant … Second" not in screen  # the in-flight drawing was erased
    finally:
        subprocess.run(["tmux", "-S", str(socket), "kill-server"], check=False)
