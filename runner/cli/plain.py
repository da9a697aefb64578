"""The human view as strings: the lines ``render`` draws, built without rich.

Piped, rich draws no styles, so the log is exactly the text of ``render.event_text``;
on a terminal it wraps each styled part of a line in SGR codes. Building and printing
rich ``Text`` costs far more than reading the stream (issue 12: reattaching to a long
run must cost about what reading it does, and on a terminal no more than the terminal
adds), so the common event types are written here as strings, byte for byte what rich
prints (tests/unit/test_plain.py holds the two side by side, piped and on terminals of
each colour system). Any other type, and text with a tab (rich expands tabs by cell
width), goes through rich.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable, Sequence
from typing import IO, TYPE_CHECKING, Any

from runner.cli import text
from runner.cli.text import ROLE_STYLE, STATUS_STYLE, visible
from runner.events import Event, MessageEvent, StatusEvent, UsageEvent

if TYPE_CHECKING:
    from rich.console import Console

Paint = Callable[[str, str], str]  # (text, rich style name) -> the text as written
# The SGR codes of the style words render uses, in the order rich writes them.
_SGR = {"bold": "1", "dim": "2", "italic": "3"}
_COLOUR = {"red": "31", "green": "32", "yellow": "33", "blue": "34", "magenta": "35"}
_COLOUR |= {"cyan": "36", "white": "37"}
_PAINTED = ("standard", "256", "truecolor")  # named colours are the same codes in each


def unstyled(part: str, _: str) -> str:
    """A pipe: rich draws no styles."""
    return part


@functools.cache
def _start(style: str) -> str:
    """The SGR sequence that opens ``style`` (a few styles, asked for on every event)."""
    words = style.split()
    codes = [_SGR[w] for w in _SGR if w in words] + [_COLOUR[w] for w in words if w in _COLOUR]
    return f"\x1b[{';'.join(codes)}m"


def sgr(part: str, style: str) -> str:
    """A terminal: the part wrapped in its SGR codes, line by line, as rich writes it."""
    if not part:
        return ""
    start = _start(style)
    if "\n" not in part:
        return f"{start}{part}\x1b[0m"
    return "\n".join(f"{start}{line}\x1b[0m" if line else "" for line in part.split("\n"))


def _status(ev: StatusEvent, stamp: str, paint: Paint) -> str:
    worker = f" on {visible(ev.worker)}" if ev.worker else ""
    reason = f" ({visible(ev.reason)})" if ev.reason else ""
    shown = paint(f"● {ev.status.value}", f"bold {STATUS_STYLE.get(ev.status, 'white')}")
    return f"{stamp}{shown}{worker}{reason}{paint(f' attempt {ev.epoch}', 'dim')}"


def _message(ev: MessageEvent, stamp: str, paint: Paint) -> str:
    if ev.role == "tool":
        name = paint(f"tool {visible(ev.name or '')}", "magenta")
        return f"{stamp}{name} →\n{paint(text.trim(visible(ev.content)), 'dim')}"
    role = paint(ev.role, ROLE_STYLE[ev.role])
    lines = []
    if ev.content or not ev.tool_calls:
        lines.append(f"{stamp}{role}: {visible(ev.content)}")
    for call in ev.tool_calls or []:
        what = visible(text.call_summary(call.name, call.arguments))
        lines.append(f"{stamp}{role} → {paint(what, 'magenta')}")
    return "\n".join(lines)


def _usage(ev: UsageEvent, stamp: str, paint: Paint) -> str:
    return stamp + paint(f"usage: {text.usage_words(ev)}", "dim")


_LINES: dict[str, Callable[[Any, str, Paint], str]] = {
    "status": _status,
    "message": _message,
    "usage": _usage,
}


def event_line(ev: Event, paint: Paint = unstyled, console: Console | None = None) -> str:
    """One event as shown (one or more lines, no trailing newline).

    ``console`` is the terminal's, for the events rich draws (None: a pipe).
    """
    lines = _LINES.get(ev.type)
    if lines is not None:
        line = lines(ev, paint(text.stamp_time(ev.ts), "dim") + " ", paint)
        if "\t" not in line:
            return line
    return _through_rich(ev, console)


def _through_rich(ev: Event, console: Console | None) -> str:
    from runner.cli import render  # only for the rare events drawn by rich

    buffer = io.StringIO()
    target = render.plain_console(buffer) if console is None else _like(console, buffer)
    render.events(target, [ev])
    return buffer.getvalue().removesuffix("\n")


def _like(console: Console, buffer: IO[str]) -> Console:
    from rich.console import Console

    return Console(
        file=buffer,
        force_terminal=True,
        color_system=console.color_system,  # type: ignore[arg-type]
        no_color=console.no_color,
        width=console.width,
        highlight=False,
        soft_wrap=True,
    )


def paints(console: Console) -> bool:
    """Whether :func:`sgr` writes what rich writes on ``console`` (a terminal)."""
    return console.color_system in _PAINTED and not console.no_color


def events(out: IO[str], batch: Sequence[Event], console: Console | None = None) -> None:
    """Write ``batch`` as ``render.events`` would, in one write.

    To a pipe (``console`` None), or to a terminal's ``console`` that :func:`paints`.
    """
    paint = unstyled if console is None else sgr
    lines: list[str] = []
    previous: Event | None = None
    for ev in batch:
        if isinstance(ev, UsageEvent) and text.is_answer(previous):
            lines[-1] += paint(f"  ({text.usage_words(ev)})", "dim")
        else:
            lines.append(event_line(ev, paint, console))
        previous = ev
    if lines:
        out.write("\n".join(lines) + "\n")
