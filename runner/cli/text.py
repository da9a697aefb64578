"""The plain-string parts of the human view: escaping, folding, summaries, stamps.

No rich here: the piped view (``plain``) is built from these alone, and ``render``
styles the same strings for a terminal. Kept apart so that reattaching through a pipe
does not import rich (issue 12).
"""

from __future__ import annotations

import json
import re
from typing import Any

from runner.events import CompactionEvent, Event, MessageEvent, Status, UsageEvent

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


def trim(text: str) -> str:
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


def stamp_time(ts: str) -> str:
    return ts[11:19] if len(ts) >= 19 else ts


def is_answer(ev: Event | None) -> bool:
    """Whether ``ev`` came from a model call (its usage event follows it)."""
    return isinstance(ev, CompactionEvent) or (
        isinstance(ev, MessageEvent) and ev.role == "assistant"
    )


def usage_words(ev: UsageEvent) -> str:
    cost = f", ${ev.cost:.4f}" if ev.cost else ""
    cache = [
        f"{n} {what}"
        for n, what in ((ev.cache_read_tokens, "from cache"), (ev.cache_write_tokens, "cached"))
        if n
    ]
    cached = f" ({', '.join(cache)})" if cache else ""
    return f"{ev.input_tokens} in{cached}, {ev.output_tokens} out{cost}"
