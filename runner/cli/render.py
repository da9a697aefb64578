"""Human rendering of events and runs (rich). Commands fetch; this module only prints.

Events are drawn by a table keyed by event type: a new event type is one model in
``runner.events`` and one renderer here. Text that comes from a model, a tool or a
user (content, names, titles, reasons, errors) goes through :func:`visible` first, so
control characters (``ESC ] 52`` clipboard writes, ``ESC ] 0`` titles, ``ESC [ 2J``)
are shown escaped, never interpreted by the terminal. ``--json`` output is not touched.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from runner.events import Event, MessageEvent, Status, StatusEvent, UsageEvent, WorkspaceEvent
from runner.store import RunRecord

TOOL_OUTPUT_LINES = 12
TOOL_OUTPUT_HEAD = 8  # a longer output shows its first and last lines, with a count
TOOL_OUTPUT_TAIL = 3
TOOL_OUTPUT_CHARS = 1200
ARG_CHARS = 120  # a tool call's shown arguments
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
DAMAGED = "DAMAGED"

# C0 controls but newline and tab, DEL, C1 controls (0x9b is a CSI on some terminals),
# lone surrogates, and the bidirectional overrides that reorder what is shown.
_UNSAFE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)
_NAMED = {"\r": "\\r", "\x1b": "\\x1b"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    return _NAMED.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def visible(text: str) -> str:
    """``text`` with every control character written out (``\\x1b``); keeps \\n and \\t."""
    return _UNSAFE.sub(_escape, text)


def _trim(text: str) -> str:
    """Tool output folded: its first and last lines with a count of those between."""
    lines = text.rstrip("\n").splitlines()
    if len(lines) > TOOL_OUTPUT_LINES:
        hidden = len(lines) - TOOL_OUTPUT_HEAD - TOOL_OUTPUT_TAIL
        lines = [
            *lines[:TOOL_OUTPUT_HEAD],
            f"… ({hidden} more lines)",
            *lines[-TOOL_OUTPUT_TAIL:],
        ]
    cut = "\n".join(lines)
    if len(cut) > TOOL_OUTPUT_CHARS:
        cut = cut[:TOOL_OUTPUT_CHARS] + f"\n… ({len(cut) - TOOL_OUTPUT_CHARS} more characters)"
    return cut


def _short(text: str, limit: int = ARG_CHARS) -> str:
    one = " ⏎ ".join(text.splitlines()) if "\n" in text else text
    return one if len(one) <= limit else one[: limit - 1] + "…"


def call_summary(name: str, args: dict[str, Any]) -> str:
    """A tool call as what it does: ``shell: ls -l``, ``write_file calc.py (32 bytes)``."""
    if name == "shell" and isinstance(args.get("command"), str) and len(args) == 1:
        return f"shell: {_short(args['command'])}"
    path = args.get("path")
    if name == "write_file" and isinstance(path, str) and isinstance(args.get("content"), str):
        size = len(args["content"].encode("utf-8", "replace"))
        return f"write_file {_short(path)} ({size} bytes)"
    if name in ("read_file", "list_dir") and set(args) <= {"path"}:
        return f"{name} {_short(str(path or '.'))}"
    shown = ", ".join(
        f"{key}={_short(value if isinstance(value, str) else json.dumps(value), 40)}"
        for key, value in args.items()
    )
    return _short(f"{name}({shown})")


def _time(ts: str) -> str:
    return ts[11:19] if len(ts) >= 19 else ts


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
        if isinstance(ev, UsageEvent) and _answer(previous):
            texts[-1].append(f"  ({_usage_words(ev)})", "dim")
        else:
            texts.append(event_text(ev))
        previous = ev
    if texts:
        console.print(Text("\n").join(texts))


def _answer(ev: Event | None) -> bool:
    return isinstance(ev, MessageEvent) and ev.role == "assistant"


def event_text(ev: Event) -> Text:
    """One event as styled text (built directly, no markup to parse)."""
    stamp = Text.assemble((_time(ev.ts), "dim"), " ")
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
        text.append(_trim(visible(ev.content)), "dim")
        return text
    color = ROLE_STYLE[ev.role]
    lines = []
    if ev.content or not ev.tool_calls:
        lines.append(Text.assemble((ev.role, color), f": {visible(ev.content)}"))
    for call in ev.tool_calls or []:
        what = visible(call_summary(call.name, call.arguments))
        lines.append(Text.assemble((ev.role, color), " → ", (what, "magenta")))
    return Text("\n").join(stamp + line for line in lines)


def _usage_words(ev: UsageEvent) -> str:
    cost = f", ${ev.cost:.4f}" if ev.cost else ""
    return f"{ev.input_tokens} in, {ev.output_tokens} out{cost}"


def _usage(stamp: Text, ev: UsageEvent) -> Text:
    return stamp + Text(f"usage: {_usage_words(ev)}", "dim")


def _workspace(stamp: Text, ev: WorkspaceEvent) -> Text:
    mib = ev.bytes / (1024 * 1024)
    text = stamp + Text(
        f"workspace: {len(ev.changes)} changed, {ev.files} files, {mib:.2f} MiB", "dim"
    )
    if ev.note:
        text.append(f" ({visible(ev.note)})", "yellow")
    return text


def _unknown(stamp: Text, ev: Any) -> Text:
    return stamp + Text(f"({visible(str(ev.type))} event)", "dim")


# One renderer per event type, keyed by the type's ``type`` value.
RENDERERS: dict[str, Callable[[Text, Any], Text]] = {
    "status": _status,
    "message": _message,
    "usage": _usage,
    "workspace": _workspace,
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
