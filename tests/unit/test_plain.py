"""The piped human view (runner/cli/plain.py) prints exactly what rich prints to a pipe."""

from __future__ import annotations

import io

import pytest

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
