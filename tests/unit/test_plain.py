"""The piped human view (runner/cli/plain.py) prints exactly what rich prints to a pipe."""

from __future__ import annotations

import io
from typing import Any

import pytest
from rich.console import Console

from runner.cli import plain, render
from runner.events import (
    Event,
    MessageEvent,
    Status,
    StatusEvent,
    ToolCallOut,
    UsageEvent,
    WorkspaceEvent,
)

TS = "2026-12-02T02:40:00.123Z"


def _e(event: Event, n: int) -> Event:
    return event.model_copy(update={"id": f"1700000000000-{n}", "ts": TS, "epoch": 2})


EVENTS: list[Event] = [
    StatusEvent(status=Status.QUEUED, reason="submitted"),
    StatusEvent(status=Status.RUNNING, worker="w1"),
    MessageEvent(role="user", content="fix the bug\nplease"),
    MessageEvent(
        role="assistant",
        content="Looking \x1b]52;c;evil\x07 around",
        tool_calls=[
            ToolCallOut(id="c1", name="shell", arguments={"command": "ls -l\npwd"}),
            ToolCallOut(id="c2", name="write_file", arguments={"path": "a.py", "content": "x=1"}),
        ],
    ),
    UsageEvent(input_tokens=120, output_tokens=9, cost=0.0012, cache_read_tokens=100),
    MessageEvent(
        role="tool", name="shell", tool_call_id="c1", content="\n".join(map(str, range(40)))
    ),
    MessageEvent(role="tool", name="shell", tool_call_id="c2", content="tab\there 漢字\tz"),
    MessageEvent(role="assistant", content=""),
    UsageEvent(input_tokens=5, output_tokens=1),
    WorkspaceEvent(changes=[], files=3, bytes=2048, note="over the cap"),
    StatusEvent(status=Status.SUCCEEDED, reason="final answer"),
]


def _rich(batch: list[Event]) -> str:
    buffer = io.StringIO()
    render.events(render.plain_console(buffer), batch)
    return buffer.getvalue()


@pytest.mark.parametrize("split", [len(EVENTS), 1, 4])
def test_plain_lines_are_the_lines_rich_prints_to_a_pipe(split: int) -> None:
    events = [_e(ev, i) for i, ev in enumerate(EVENTS)]
    ours, theirs = io.StringIO(), io.StringIO()
    for i in range(0, len(events), split):
        plain.events(ours, events[i : i + split])
        theirs.write(_rich(events[i : i + split]))
    assert ours.getvalue() == theirs.getvalue()
    assert "\\x1b]52" in ours.getvalue() and "\x1b" not in ours.getvalue()


def _terminal(buffer: io.StringIO, system: str, **options: Any) -> Console:
    return Console(
        file=buffer,
        force_terminal=True,
        color_system=system,  # type: ignore[arg-type]
        width=100,
        highlight=False,
        soft_wrap=True,
        **options,
    )


@pytest.mark.parametrize("system", ["standard", "256", "truecolor"])
@pytest.mark.parametrize("split", [len(EVENTS), 1, 4])
def test_painted_lines_are_the_bytes_rich_prints_to_a_terminal(system: str, split: int) -> None:
    events = [_e(ev, i) for i, ev in enumerate(EVENTS)]
    events.append(_e(MessageEvent(role="tool", name="t", content="a\n\nb\n"), 99))
    ours, theirs = io.StringIO(), io.StringIO()
    console = _terminal(io.StringIO(), system)
    assert plain.paints(console)
    for i in range(0, len(events), split):
        plain.events(ours, events[i : i + split], console)
        render.events(_terminal(theirs, system), events[i : i + split])
    assert ours.getvalue() == theirs.getvalue()
    assert "\x1b[1;32massistant\x1b[0m" in ours.getvalue()


def test_no_colour_or_no_colour_system_is_left_to_rich() -> None:
    assert not plain.paints(_terminal(io.StringIO(), "standard", no_color=True))
    assert not plain.paints(Console(file=io.StringIO(), force_terminal=True, color_system=None))
