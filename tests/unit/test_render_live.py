"""Issue 12, points 3 and 4: the human view reads like a log; in-flight output redrawn."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from runner.cli import render
from runner.cli.live import LiveView
from runner.events import DeltaEvent, MessageEvent, ToolCallOut, UsageEvent
from workers.stop import Stop
from workers.tools import ToolContext, run_tool


def _console() -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, width=200, no_color=True), buf


def test_tool_calls_are_shown_by_what_they_do() -> None:
    assert render.call_summary("shell", {"command": "python3 test_calc.py"}) == (
        "shell: python3 test_calc.py"
    )
    body = "def add(a, b):\n    return a + b\n"
    assert render.call_summary("write_file", {"path": "calc.py", "content": body}) == (
        f"write_file calc.py ({len(body)} bytes)"
    )
    assert render.call_summary("read_file", {"path": "a.txt"}) == "read_file a.txt"
    assert render.call_summary("list_dir", {}) == "list_dir ."
    assert render.call_summary("other", {"n": 3, "s": "x"}) == "other(n=3, s=x)"
    long = render.call_summary("shell", {"command": "echo " + "y" * 500})
    assert len(long) <= render.ARG_CHARS + len("shell: ")


def test_usage_is_a_dim_suffix_of_its_step_and_controls_stay_escaped() -> None:
    console, buf = _console()
    call = ToolCallOut(id="c", name="shell", arguments={"command": "echo \x1b[2J"})
    render.events(
        console,
        [
            MessageEvent(role="assistant", content="looking", tool_calls=[call]),
            UsageEvent(input_tokens=10, output_tokens=2),
        ],
    )
    text = buf.getvalue()
    assert "assistant → shell: echo \\x1b[2J  (10 in, 2 out)" in text
    assert "usage:" not in text and "\x1b" not in text


def test_long_tool_output_is_folded_to_its_first_and_last_lines() -> None:
    output = "\n".join(f"line {i}" for i in range(100))
    folded = render.trim(output)
    assert folded.splitlines()[0] == "line 0" and folded.splitlines()[-1] == "line 99"
    assert f"… ({100 - render.TOOL_OUTPUT_HEAD - render.TOOL_OUTPUT_TAIL} more lines)" in folded
    assert "line 50" not in folded
    assert render.trim("short\n") == "short"


def test_live_view_grows_the_text_and_the_committed_message_replaces_it() -> None:
    buf = io.StringIO()
    console = Console(file=buf, width=100, force_terminal=True, no_color=True)
    view = LiveView(console)
    view.show([DeltaEvent(text="Hello ", after="5-0"), DeltaEvent(text="wor", after="5-0")])
    assert view.drawing().plain == "assistant … Hello wor"
    view.show([DeltaEvent(kind="note", text="rate limited; retrying in 8 s", after="5-0")])
    assert "rate limited" in view.drawing().plain
    view.show([MessageEvent(id="6-0", ts="", role="assistant", content="Hello world")])
    assert view.drawing().plain == ""
    view.show([DeltaEvent(kind="args", call=0, name="shell", text='{"comm', after="6-0")])
    assert view.drawing().plain == 'calls shell {"comm'
    view.show([DeltaEvent(kind="reset", after="6-0")])
    assert view.drawing().plain == ""
    view.close()
    assert "Hello world" in buf.getvalue()


def test_a_long_running_shell_tool_reports_its_last_output_line(tmp_path: Path) -> None:
    notes: list[str] = []
    ctx = ToolContext(
        workspace=tmp_path,
        stop=Stop(5),
        timeout=30,
        output_bytes=4096,
        progress=notes.append,
        progress_after=1,
    )
    command = "echo first; echo compiling; sleep 2.5; echo done"
    result = run_tool("shell", {"command": command}, ctx)
    assert "done" in result.content
    assert notes and notes[0].startswith("shell still running (")
    assert notes[0].endswith(": compiling")


def test_a_long_streamed_line_wraps_and_shows_its_tail_on_a_soft_wrapping_console() -> None:
    buf = io.StringIO()
    # The CLI's stdout console soft-wraps; a Live there would crop a long line at one row.
    console = Console(file=buf, width=40, force_terminal=True, no_color=True, soft_wrap=True)
    view = LiveView(console)
    words = " ".join(f"w{i}" for i in range(400))
    view.show([DeltaEvent(text=words, after="5-0")])
    drawn = console.render_lines(view.drawing(), console.options)
    rows = ["".join(seg.text for seg in row).rstrip() for row in drawn]
    assert len(rows) > 1 and rows[-1].endswith("w399")  # the newest words are on screen
    assert "w0 " not in "".join(rows)  # the oldest scrolled out of the window
    view.close()
