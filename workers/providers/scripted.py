"""The scripted model: offline and deterministic, for the demo, the tests and anyone's CI."""

from __future__ import annotations

import copy
import json
import os
import re
import signal
from collections.abc import Sequence
from typing import Any

from runner.script import Script
from workers.providers.base import NULL_SINK, Interrupted, Reply, Sink, ToolCall, ToolSpec, Usage
from workers.stop import Stop

MIN_CHUNK_SECONDS = 0.02  # a scripted stream sends a chunk at most this often


def chunks(content: str, sleep: float) -> list[str]:
    """``content`` cut at word boundaries into pieces to send evenly over ``sleep``."""
    words = re.findall(r"\s*\S+\s*", content) or ([content] if content else [])
    if not words:
        return []
    n = max(1, min(len(words), int(sleep / MIN_CHUNK_SECONDS)))
    size = -(-len(words) // n)  # ceiling division
    return ["".join(words[i : i + size]) for i in range(0, len(words), size)]


def _content_chars(messages: list[dict[str, Any]]) -> int:
    return sum(len(str(m.get("content") or "")) for m in messages)


class ScriptedModel:
    """An offline, deterministic model that plays a :class:`Script`.

    The step answered is this run's own step count, which the agent passes from its
    transcript fold, so a resumed turn picks up exactly where the committed transcript
    ends (and a session's earlier turns do not count).
    """

    def __init__(self, script: Script) -> None:
        self.script = script

    def complete(
        self,
        messages: list[dict[str, Any]],
        tools: Sequence[ToolSpec],
        stop: Stop,
        *,
        step: int | None = None,
        sink: Sink = NULL_SINK,
    ) -> Reply:
        """The script's answer to step ``step`` (default: the assistant messages so far).

        A step's ``sleep`` is its thinking time: its content streams to ``sink`` spread
        over it, then its tool call's arguments, as a real model's stream would.
        """
        if stop.requested.is_set():
            raise Interrupted
        index = step
        if index is None:
            index = sum(1 for m in messages if m.get("role") == "assistant")
        if index >= len(self.script.steps):
            return self._reply("script finished", [], messages)
        scripted = self.script.steps[index]
        if scripted.crash:
            # Die like an OOM kill would: no handler, no cleanup, nothing committed.
            os.kill(os.getpid(), signal.SIGKILL)
        if scripted.sleep:
            self._stream(scripted.content, scripted.sleep, stop, sink)
        calls = []
        if scripted.tool is not None:
            if scripted.sleep:
                sink.args(0, scripted.tool, json.dumps(scripted.args, ensure_ascii=False))
            # A copy, so a caller that edits the arguments cannot change the script.
            calls.append(ToolCall(f"call_{index}", scripted.tool, copy.deepcopy(scripted.args)))
        return self._reply(scripted.content, calls, messages)

    @staticmethod
    def _stream(content: str, sleep: float, stop: Stop, sink: Sink) -> None:
        """Send ``content`` over ``sleep`` seconds; Interrupted if a stop comes first."""
        pieces = chunks(content, sleep)
        if not pieces:
            if stop.wait(sleep):
                raise Interrupted
            return
        interval = sleep / len(pieces)
        for piece in pieces:
            sink.text(piece)
            if stop.wait(interval):
                raise Interrupted

    @staticmethod
    def _reply(content: str, calls: list[ToolCall], messages: list[dict[str, Any]]) -> Reply:
        # Rough token counts (4 chars a token) so usage events can be exercised offline;
        # no cost, so a RUNNER_PRICES entry for "scripted" prices it (issue 13).
        usage = Usage(_content_chars(messages) // 4, len(content) // 4)
        return Reply(content, calls, usage)
