"""What the model is sent: the one shared token estimate, the window, and the view fold.

The view is folded beside the transcript (``runner.transcript``) from committed events
only, with no I/O: the latest ``compaction`` summary stands for every message before
its cut, tool outputs it trimmed are shown trimmed, and the rest is sent as committed.
So a resumed attempt rebuilds the same view the lost one had, byte for byte, and the
stream itself is never rewritten (``runner transcript`` still shows every message).

Token counts come from the provider's reported usage where there is one (the usage
event right after an assistant message covers everything sent plus that answer) and
from :func:`estimate` for whatever came after it; with no usage, or once a compaction
changed the view, from :func:`estimate` alone.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from runner import prompts
from runner.events import CompactionEvent

MESSAGE_TOKENS = 4  # what a message costs besides its text (role, separators)
BYTES_PER_TOKEN = 3  # on the safe side: English runs near 4, code and JSON nearer 3
# A model whose window is not known (no setting, no table entry) is assumed to have this.
DEFAULT_WINDOW = 32_768
MIN_WINDOW = 1024
MAX_WINDOW = 10_000_000


def estimate_text(text: str) -> int:
    """The shared token estimate of ``text`` (UTF-8 bytes over three, rounded up)."""
    return -(-len(text.encode("utf-8", "replace")) // BYTES_PER_TOKEN)


def estimate(message: dict[str, Any]) -> int:
    """The shared token estimate of one chat message (OpenAI shape), tool calls included."""
    tokens = MESSAGE_TOKENS + estimate_text(str(message.get("content") or ""))
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        tokens += MESSAGE_TOKENS + estimate_text(
            str(function.get("name", "")) + str(function.get("arguments", ""))
        )
    return tokens


def estimate_tools(specs: Sequence[Any]) -> int:
    """What describing ``specs`` (neutral ToolSpecs) to the model costs, estimated."""
    described = [
        {"name": s.name, "description": s.description, "parameters": s.parameters} for s in specs
    ]
    return estimate_text(json.dumps(described, separators=(",", ":"))) if described else 0


def trim(text: str, keep_bytes: int) -> str:
    """``text`` cut to its head and tail (``keep_bytes`` in all), with the bytes left out counted.

    Deterministic, so the fold trims a committed output the same way on every replay.
    """
    data = text.encode("utf-8", "surrogatepass")
    if len(data) <= keep_bytes:
        return text
    head_bytes = keep_bytes * 2 // 3
    tail_bytes = keep_bytes - head_bytes
    # Cut on character boundaries: a partial character at either cut is dropped.
    head = data[:head_bytes].decode("utf-8", "ignore")
    tail = data[len(data) - tail_bytes :].decode("utf-8", "ignore") if tail_bytes else ""
    dropped = len(data) - len(head.encode("utf-8", "surrogatepass")) - len(tail.encode())
    return f"{head}\n[... {dropped:,} bytes trimmed to fit the context window ...]\n{tail}"


@dataclass
class View:
    """The model's view of a transcript's messages, folded from committed events.

    - ``start``: index of the first message sent as committed (0 until a summary).
    - ``summary``: the latest compaction summary (it stands for ``messages[:start]``).
    - ``shown``: trimmed stand-ins for messages, by index.
    - ``sizes``: the token estimate of every message as it is shown.
    - ``reported``: (messages covered, tokens) of the last provider-reported usage, or
      None once a compaction changed what those tokens counted.
    """

    start: int = 0
    summary: str | None = None
    shown: dict[int, dict[str, Any]] = field(default_factory=dict)
    sizes: list[int] = field(default_factory=list)
    reported: tuple[int, int] | None = None

    def message(self, message: dict[str, Any]) -> None:
        """A message was appended to the transcript."""
        self.sizes.append(estimate(message))

    def usage(self, covered: int, tokens: int) -> None:
        """The model call that answered with message ``covered - 1`` counted ``tokens``."""
        self.reported = (covered, tokens)

    def compaction(self, messages: list[dict[str, Any]], event: CompactionEvent) -> None:
        """Apply a committed compaction; positions in it count back from the event."""
        n = len(messages)
        for back in event.trimmed or []:
            index = n - back
            if self.start <= index < n and back > 0:
                shown = {
                    **messages[index],
                    "content": trim(messages[index]["content"], event.trim_bytes),
                }
                self.shown[index] = shown
                self.sizes[index] = estimate(shown)
        if event.summary is not None:
            self.summary = event.summary
            self.start = max(self.start, n - max(0, min(event.keep, n)))
        self.reported = None

    def summary_message(self) -> dict[str, Any] | None:
        """The message that stands for what the summary replaces, if there is a summary."""
        if self.summary is None:
            return None
        return {"role": "user", "content": prompts.summary_text(self.summary)}

    def build(self, messages: list[dict[str, Any]], system: str) -> list[dict[str, Any]]:
        """What the model is sent: system prompt, latest summary, the messages after it."""
        view: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
        summary = self.summary_message()
        if summary is not None:
            view.append(summary)
        shown = self.shown
        view.extend(shown.get(i, messages[i]) for i in range(self.start, len(messages)))
        return view

    def fixed_tokens(self, system: str, tools_tokens: int) -> int:
        """What the view costs besides its messages: system prompt, summary, tools."""
        summary = self.summary_message()
        tokens = tools_tokens + (estimate({"content": system}) if system else 0)
        return tokens + (estimate(summary) if summary is not None else 0)

    def tokens(self, system: str, tools_tokens: int, reported: bool = True) -> int:
        """The view's size in tokens: reported usage plus estimates after it, else estimates."""
        if reported and self.reported is not None:
            covered, counted = self.reported
            return counted + sum(self.sizes[covered:])
        return self.fixed_tokens(system, tools_tokens) + sum(self.sizes[self.start :])
