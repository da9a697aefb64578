"""The human view for a pipe: the lines ``render`` draws, built as plain strings.

Piped, rich draws no styles, so the log is exactly the text of ``render.event_text``
(built from the strings of ``text``, which this module uses without importing rich);
but building and printing rich ``Text`` costs far more than reading the stream
(issue 12: reattaching to a long run must cost about what reading it does). The
common event types are written here as strings, line for line the same as rich
prints them (tests/unit/test_plain.py holds the two side by side); any other type,
and text with a tab (rich expands tabs by cell width), goes through rich.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from typing import IO, Any

from runner.cli import text
from runner.cli.text import visible
from runner.events import Event, MessageEvent, StatusEvent, UsageEvent


def _status(ev: StatusEvent) -> str:
    worker = f" on {visible(ev.worker)}" if ev.worker else ""
    reason = f" ({visible(ev.reason)})" if ev.reason else ""
    return f"● {ev.status.value}{worker}{reason} attempt {ev.epoch}"


def _message(ev: MessageEvent, stamp: str) -> str:
    if ev.role == "tool":
        return f"tool {visible(ev.name or '')} →\n{text.trim(visible(ev.content))}"
    lines = []
    if ev.content or not ev.tool_calls:
        lines.append(f"{ev.role}: {visible(ev.content)}")
    for call in ev.tool_calls or []:
        lines.append(f"{ev.role} → {visible(text.call_summary(call.name, call.arguments))}")
    return f"\n{stamp}".join(lines)


def _usage(ev: UsageEvent) -> str:
    return f"usage: {text.usage_words(ev)}"


_PLAIN: dict[str, Callable[[Any, str], str]] = {
    "status": lambda ev, _: _status(ev),
    "message": _message,
    "usage": lambda ev, _: _usage(ev),
}


def event_line(ev: Event) -> str:
    """One event as the pipe shows it (one or more lines, no trailing newline)."""
    stamp = f"{text.stamp_time(ev.ts)} "
    plain = _PLAIN.get(ev.type)
    if plain is not None:
        line = stamp + plain(ev, stamp)
        if "\t" not in line:
            return line
    return _through_rich(ev)


def _through_rich(ev: Event) -> str:
    from runner.cli import render as rich_render  # only for the rare events drawn by rich

    buffer = io.StringIO()
    rich_render.events(rich_render.plain_console(buffer), [ev])
    return buffer.getvalue().removesuffix("\n")


def events(out: IO[str], batch: Sequence[Event]) -> None:
    """Write ``batch`` as ``render.events`` would to a pipe, in one write."""
    lines: list[str] = []
    previous: Event | None = None
    for ev in batch:
        if isinstance(ev, UsageEvent) and text.is_answer(previous):
            lines[-1] += f"  ({text.usage_words(ev)})"
        else:
            lines.append(event_line(ev))
        previous = ev
    if lines:
        out.write("\n".join(lines) + "\n")
