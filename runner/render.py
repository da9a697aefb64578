"""Human rendering of events and runs (rich). Commands fetch; this module only prints."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from runner.events import Event, MessageEvent, Status, StatusEvent, UsageEvent
from runner.store import RunRecord

TOOL_OUTPUT_LINES = 12
TOOL_OUTPUT_CHARS = 1200
ROLE_STYLE = {"user": "bold blue", "assistant": "bold green", "system": "dim", "tool": "magenta"}
STATUS_STYLE = {
    Status.QUEUED: "yellow",
    Status.RUNNING: "cyan",
    Status.WAITING: "magenta",
    Status.SUSPENDED: "red",
    Status.SUCCEEDED: "green",
    Status.FAILED: "red",
    Status.CANCELLED: "yellow",
}


def _trim(text: str) -> str:
    text = text.rstrip("\n")
    cut = "\n".join(text.splitlines()[:TOOL_OUTPUT_LINES])[:TOOL_OUTPUT_CHARS]
    hidden = len(text) - len(cut)
    return cut + (f"\n… ({hidden} more characters)" if hidden > 0 else "")


def _time(ts: str) -> str:
    return ts[11:19] if len(ts) >= 19 else ts


def event(console: Console, ev: Event) -> None:
    """Print one event for a human."""
    console.print(event_text(ev))


def events(console: Console, batch: Sequence[Event]) -> None:
    """Print many events in one write: replaying a long transcript is mostly print calls."""
    if batch:
        console.print(Text("\n").join(event_text(ev) for ev in batch))


def event_text(ev: Event) -> Text:
    """One event as styled text (built directly, no markup to parse)."""
    stamp = Text.assemble((_time(ev.ts), "dim"), " ")
    if isinstance(ev, MessageEvent) and ev.role != "tool":
        return Text("\n").join(stamp + line for line in _message_lines(ev))
    text = stamp
    if isinstance(ev, StatusEvent):
        text.append(f"● {ev.status.value}", f"bold {STATUS_STYLE.get(ev.status, 'white')}")
        text.append(f" on {ev.worker}" if ev.worker else "")
        text.append(f" ({ev.reason})" if ev.reason else "")
        text.append(f" attempt {ev.epoch}", "dim")
    elif isinstance(ev, UsageEvent):
        cost = f", ${ev.cost:.4f}" if ev.cost else ""
        text.append(f"usage: {ev.input_tokens} in, {ev.output_tokens} out{cost}", "dim")
    else:
        text.append(f"tool {ev.name or ''}", "magenta")
        text.append(" →\n")
        text.append(_trim(ev.content), "dim")
    return text


def _message_lines(ev: MessageEvent) -> list[Text]:
    color = ROLE_STYLE[ev.role]
    lines = []
    if ev.content or not ev.tool_calls:
        lines.append(Text.assemble((ev.role, color), f": {ev.content}"))
    for call in ev.tool_calls or []:
        args = json.dumps(call.arguments, ensure_ascii=False)
        lines.append(Text.assemble((ev.role, color), " calls ", (call.name, "magenta"), f" {args}"))
    return lines


def _when(ms: int) -> str:
    if not ms:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def runs(console: Console, records: list[RunRecord]) -> None:
    """A table of runs."""
    table = Table(box=None, pad_edge=False)
    table.add_column("ID", no_wrap=True, min_width=19)
    table.add_column("STATUS", no_wrap=True, min_width=9)
    for col in ("STEPS", "QUEUE", "WORKER", "UPDATED UTC"):
        table.add_column(col, no_wrap=True, overflow="ellipsis")
    # The title takes what is left and gives way first on a narrow terminal.
    table.add_column("TITLE", no_wrap=True, overflow="ellipsis", ratio=1, min_width=4)
    for r in records:
        table.add_row(
            r.id,
            f"[{STATUS_STYLE.get(r.status, 'white')}]{r.status.value}[/]",
            str(r.steps),
            r.queue,
            r.worker or "-",
            _when(r.updated_ms)[5:],  # MM-DD HH:MM:SS: the year only costs width
            escape(r.title),
        )
    console.print(table)


def run(console: Console, r: RunRecord) -> None:
    """One run's record."""
    style = STATUS_STYLE.get(r.status, "white")
    rows = [
        (
            "status",
            f"[{style}]{r.status.value}[/]" + (f" ({escape(r.reason)})" if r.reason else ""),
        ),
        ("attempt", str(r.epoch)),
        ("steps", str(r.steps)),
        ("queue", r.queue),
        ("model", escape(r.model)),
        ("worker", r.worker or "-"),
        ("dirty restarts", str(r.dirty)),
        ("created", _when(r.created_ms)),
        ("updated", _when(r.updated_ms)),
    ]
    if r.session:
        rows.append(("session", escape(r.session)))
    if r.error:
        rows.append(("error", escape(r.error)))
    console.print(f"[bold]{r.id}[/bold]  {escape(r.title)}")
    for key, value in rows:
        console.print(f"  {key:<15}{value}")
