"""Human rendering of events and runs (rich). Commands fetch; this module only prints.

Events are drawn by a table keyed by event type: a new event type is one model in
``runner.events`` and one renderer here. Text that comes from a model, a tool or a
user (content, names, titles, reasons, errors) goes through :func:`visible` first, so
control characters (``ESC ] 52`` clipboard writes, ``ESC ] 0`` titles, ``ESC [ 2J``)
are shown escaped, never interpreted by the terminal. ``--json`` output is not touched.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import IO, Any

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

# The plain-string helpers, re-exported: callers and tests use them as render.NAME.
from runner.cli.text import (
    ARG_CHARS,
    ROLE_STYLE,
    STATUS_STYLE,
    TOOL_OUTPUT_CHARS,
    TOOL_OUTPUT_HEAD,
    TOOL_OUTPUT_LINES,
    TOOL_OUTPUT_TAIL,
    call_summary,
    is_answer,
    stamp_time,
    trim,
    usage_words,
    visible,
)
from runner.events import (
    CompactionEvent,
    Event,
    MessageEvent,
    Status,
    StatusEvent,
    UsageEvent,
    WorkspaceEvent,
)
from runner.store import RunRecord

DAMAGED = "DAMAGED"

__all__ = [
    "ARG_CHARS",
    "DAMAGED",
    "RENDERERS",
    "ROLE_STYLE",
    "RUN_COLUMNS",
    "STATUS_STYLE",
    "TITLE_MIN",
    "TOOL_OUTPUT_CHARS",
    "TOOL_OUTPUT_HEAD",
    "TOOL_OUTPUT_LINES",
    "TOOL_OUTPUT_TAIL",
    "call_summary",
    "event",
    "event_text",
    "events",
    "is_answer",
    "plain_console",
    "run",
    "runs",
    "stamp_time",
    "trim",
    "usage_words",
    "visible",
]


def plain_console(file: IO[str]) -> Console:
    """A console that writes plain text to ``file``, as the CLI's stdout does to a pipe."""
    return Console(file=file, highlight=False, soft_wrap=True, color_system=None)


def event(console: Console, ev: Event) -> None:
    """Print one event for a human."""
    console.print(event_text(ev))


def events(console: Console, batch: Sequence[Event]) -> None:
    """Print many events in one write: replaying a long transcript is mostly print calls.

    A usage event right after its assistant message is folded into it as a dim suffix.
    """
    texts: list[Text] = []
    previous: Event | None = None
    for ev in batch:
        if isinstance(ev, UsageEvent) and is_answer(previous):
            texts[-1].append(f"  ({usage_words(ev)})", "dim")
        else:
            texts.append(event_text(ev))
        previous = ev
    if texts:
        console.print(Text("\n").join(texts))


def event_text(ev: Event) -> Text:
    """One event as styled text (built directly, no markup to parse)."""
    stamp = Text.assemble((stamp_time(ev.ts), "dim"), " ")
    return RENDERERS.get(ev.type, _unknown)(stamp, ev)


def _status(stamp: Text, ev: StatusEvent) -> Text:
    text = stamp
    text.append(f"● {ev.status.value}", f"bold {STATUS_STYLE.get(ev.status, 'white')}")
    text.append(f" on {visible(ev.worker)}" if ev.worker else "")
    text.append(f" ({visible(ev.reason)})" if ev.reason else "")
    text.append(f" attempt {ev.epoch}", "dim")
    return text


def _message(stamp: Text, ev: MessageEvent) -> Text:
    if ev.role == "tool":
        text = stamp
        text.append(f"tool {visible(ev.name or '')}", "magenta")
        text.append(" →\n")
        text.append(trim(visible(ev.content)), "dim")
        return text
    color = ROLE_STYLE[ev.role]
    lines = []
    if ev.content or not ev.tool_calls:
        lines.append(Text.assemble((ev.role, color), f": {visible(ev.content)}"))
    for call in ev.tool_calls or []:
        what = visible(call_summary(call.name, call.arguments))
        lines.append(Text.assemble((ev.role, color), " → ", (what, "magenta")))
    return Text("\n").join(stamp + line for line in lines)


def _usage(stamp: Text, ev: UsageEvent) -> Text:
    return stamp + Text(f"usage: {usage_words(ev)}", "dim")


def _workspace(stamp: Text, ev: WorkspaceEvent) -> Text:
    mib = ev.bytes / (1024 * 1024)
    text = stamp + Text(
        f"workspace: {len(ev.changes)} changed, {ev.files} file{'' if ev.files == 1 else 's'}, "
        f"{mib:.2f} MiB",
        "dim",
    )
    if ev.note:
        text.append(f" ({visible(ev.note)})", "yellow")
    return text


def _compaction(stamp: Text, ev: CompactionEvent) -> Text:
    """What the model's view lost: how many messages the summary replaced, what was trimmed."""
    done = []
    if ev.summary is not None:
        done.append(f"{ev.replaced} messages summarised, {ev.keep} kept")
    if ev.trimmed:
        done.append(f"{len(ev.trimmed)} tool outputs trimmed")
    text = stamp + Text("compaction: ", "bold yellow")
    text.append(", ".join(done) or "nothing changed")
    text.append(f" (~{ev.tokens_before:,} → ~{ev.tokens_after:,} of {ev.window:,} tokens)", "dim")
    if ev.summary:
        text.append("\n")
        text.append(trim(visible(ev.summary)), "dim")
    return text


def _unknown(stamp: Text, ev: Any) -> Text:
    return stamp + Text(f"({visible(str(ev.type))} event)", "dim")


# One renderer per event type, keyed by the type's ``type`` value.
RENDERERS: dict[str, Callable[[Text, Any], Text]] = {
    "status": _status,
    "message": _message,
    "usage": _usage,
    "workspace": _workspace,
    "compaction": _compaction,
}


def _when(ms: int) -> str:
    if not ms:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def _status_cell(r: RunRecord) -> Text:
    if r.damaged:
        return Text(DAMAGED, "bold red")
    return Text(r.status.value, STATUS_STYLE.get(r.status, "white"))


def runs(console: Console, records: list[RunRecord]) -> None:
    """A table of runs; a damaged one says DAMAGED and what is wrong in place of its title.

    No cell is ever cut to "…": the title wraps in its column, and where even the other
    columns do not fit (a pipe gets 80), each run is printed as two whole lines instead.
    """
    rows = [_run_row(r) for r in records]
    table = Table(box=None, pad_edge=False, padding=(0, 1, 0, 0))
    for col in RUN_COLUMNS:
        table.add_column(col, no_wrap=True, min_width=len(col))
    # The title takes what is left and wraps there.
    table.add_column("TITLE", overflow="fold", ratio=1, min_width=TITLE_MIN)
    for row in rows:
        table.add_row(*row)
    wide = console.options.update_width(10_000)
    if Measurement.get(console, wide, table).minimum <= console.width:
        console.print(table)
        return
    for row in rows:
        ident, status, steps, queue, worker, updated, title = row
        console.print(
            Text.assemble(ident, "  ", status, f"  {steps} steps  queue ", queue, "  worker ")
            + Text.assemble(worker, f"  {updated}"),
            soft_wrap=False,  # wrapped between words, never cut
        )
        console.print(Text.assemble("  ", title), soft_wrap=False)


RUN_COLUMNS = ("ID", "STATUS", "STEPS", "QUEUE", "WORKER", "UPDATED UTC")
TITLE_MIN = 12


def _run_row(r: RunRecord) -> tuple[Text, Text, str, Text, Text, str, Text]:
    damaged = r.damaged
    title = Text(visible(damaged), "red") if damaged else Text(visible(r.title))
    return (
        Text(visible(r.id)),
        _status_cell(r),
        str(r.steps),
        Text(visible(r.queue)),
        Text(visible(r.worker) or "-"),
        _when(r.updated_ms)[5:],  # MM-DD HH:MM:SS: the year only costs width
        title,
    )


def run(console: Console, r: RunRecord) -> None:
    """One run's record."""
    status = _status_cell(r)
    if r.reason:
        status.append(f" ({visible(r.reason)})")
    rows: list[tuple[str, Text | str]] = [
        ("status", status),
        ("attempt", str(r.epoch)),
        ("steps", str(r.steps)),
        ("queue", visible(r.queue)),
        ("model", visible(r.model)),
        ("worker", visible(r.worker) or "-"),
        ("dirty restarts", str(r.dirty)),
        ("created", _when(r.created_ms)),
        ("updated", _when(r.updated_ms)),
    ]
    if damaged := r.damaged:
        rows.append(("damaged", Text(visible(damaged), "red")))
    if r.session:
        rows.append(("session", visible(r.session)))
    if r.error:
        rows.append(("error", visible(r.error)))
    if r.workspace:
        rows.append(("workspace", Text(visible(r.workspace), "yellow")))
    rows += _budget_rows(r)
    console.print(Text.assemble((visible(r.id), "bold"), "  ", visible(r.title)))
    for key, value in rows:
        console.print(Text.assemble(f"  {key:<15}", value))


def _budget_rows(r: RunRecord) -> list[tuple[str, Text | str]]:
    """Usage totals, the limits set, and what a waiting run waits for (issues 13, 14)."""
    tokens = f"{r.tokens_in + r.tokens_out} ({r.tokens_in} in, {r.tokens_out} out)"
    rows: list[tuple[str, Text | str]] = [("tokens", tokens), ("cost", f"${r.cost:.4f}")]
    limits = [
        f"{name} {value:g}"
        for name, value in (
            ("steps", r.max_steps),
            ("tokens", r.max_tokens),
            ("cost $", r.max_cost),
            ("time s", r.max_time),
            ("tool calls", r.max_tool_calls),
        )
        if value
    ]
    rows.append(("limits", ", ".join(limits) or "-"))
    if r.approve:
        rows.append(("approve", visible(r.approve.replace(",", ", "))))
    if r.waiting_for and r.status is Status.WAITING:
        what = f"approval of {r.gate_tool} ({r.gate_call})" if r.gate_call else r.waiting_for
        rows.append(("waiting for", Text(visible(what), "magenta")))
    return rows
