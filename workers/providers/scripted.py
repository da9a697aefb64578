"""The scripted model: offline and deterministic, for the demo, the tests and anyone's CI."""

from __future__ import annotations

import copy
import os
import signal
from collections.abc import Sequence
from typing import Any

from runner.script import Script
from workers.providers.base import Interrupted, Reply, ToolCall, ToolSpec, Usage
from workers.stop import Stop


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
    ) -> Reply:
        """The script's answer to step ``step`` (default: the assistant messages so far)."""
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
        if scripted.sleep and stop.wait(scripted.sleep):
            raise Interrupted
        calls = []
        if scripted.tool is not None:
            # A copy, so a caller that edits the arguments cannot change the script.
            calls.append(ToolCall(f"call_{index}", scripted.tool, copy.deepcopy(scripted.args)))
        return self._reply(scripted.content, calls, messages)

    @staticmethod
    def _reply(content: str, calls: list[ToolCall], messages: list[dict[str, Any]]) -> Reply:
        # Rough token counts (4 chars a token) so usage events can be exercised offline.
        usage = Usage(_content_chars(messages) // 4, len(content) // 4, cost=0.0)
        return Reply(content, calls, usage)
