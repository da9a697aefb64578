"""Human rendering of events and runs (rich). Commands fetch; this module only prints."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from runner.events import MessageEvent, Status, StatusEvent, UsageEvent
from runner.store import RunRecord

AnyEvent = StatusEvent | MessageEvent | UsageEvent
TOOL_OUTPUT_LINES = 12
TOOL_OUTPUT_CHARS = 1200
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


def event(console: Console, ev: AnyEvent) -> None:
    """Print one event for a human."""
    stamp = f"[dim]{_time(ev.ts)}[/dim]"
    if isinstance(ev, StatusEvent):
        style = STATUS_STYLE.get(ev.status, "white")
        where = f" on {escape(ev.worker)}" if ev.worker else ""
        why = f" ({escape(ev.reason)})" if ev.reason else ""
        console.print(
            f"{stamp} [bold {style}]● {ev.status.value}[/]{where}{why} "
            f"[dim]attempt {ev.epoch}[/dim]"
        )
    elif isinstance(ev, MessageEvent):
        _message(console, stamp, ev)
    else:
        cost = f", ${ev.cost:.4f}" if ev.cost else ""
        console.print(f"{stamp} [dim]usage: {ev.input_tokens} in, {ev.output_tokens} out{cost}[/]")


def _message(console: Console, stamp: str, ev: MessageEvent) -> None:
    if ev.role == "tool":
        console.print(f"{stamp} [magenta]tool {escape(ev.name or '')}[/] →")
        console.print(f"[dim]{escape(_trim(ev.content))}[/dim]")
        return
    color = {"user": "bold blue", "assistant": "bold green", "system": "dim"}[ev.role]
    if ev.content:
        console.print(f"{stamp} [{color}]{ev.role}[/]: {escape(ev.content)}")
    for call in ev.tool_calls or []:
        args = json.dumps(call.arguments, ensure_ascii=False)
        console.print(
            f"{stamp} [{color}]{ev.role}[/] calls [magenta]{escape(call.name)}[/] {escape(args)}"
        )


def _when(ms: int) -> str:
    if not ms:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def runs(console: Console, records: list[RunRecord]) -> None:
    """A table of runs."""
    table = Table(box=None, pad_edge=False)
    for col in ("ID", "STATUS", "STEPS", "QUEUE", "WORKER", "UPDATED (UTC)", "TITLE"):
        table.add_column(col, no_wrap=col != "TITLE", overflow="ellipsis")
    for r in records:
        table.add_row(
            r.id,
            f"[{STATUS_STYLE.get(r.status, 'white')}]{r.status.value}[/]",
            str(r.steps),
            r.queue,
            r.worker or "-",
            _when(r.updated_ms),
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
