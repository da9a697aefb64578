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

    The step answered is the number of assistant messages already in the conversation,
    so a resumed turn picks up exactly where the committed transcript ends.
    """

    def __init__(self, script: Script) -> None:
        self.script = script

    def complete(
        self, messages: list[dict[str, Any]], tools: Sequence[ToolSpec], stop: Stop
    ) -> Reply:
        """The script's answer to this point of the conversation."""
        if stop.requested.is_set():
            raise Interrupted
        index = sum(1 for m in messages if m.get("role") == "assistant")
        if index >= len(self.script.steps):
            return self._reply("script finished", [], messages)
        step = self.script.steps[index]
        if step.crash:
            # Die like an OOM kill would: no handler, no cleanup, nothing committed.
            os.kill(os.getpid(), signal.SIGKILL)
        if step.sleep and stop.wait(step.sleep):
            raise Interrupted
        calls = []
        if step.tool is not None:
            # A copy, so a caller that edits the arguments cannot change the script.
            calls.append(ToolCall(f"call_{index}", step.tool, copy.deepcopy(step.args)))
        return self._reply(step.content, calls, messages)

    @staticmethod
    def _reply(content: str, calls: list[ToolCall], messages: list[dict[str, Any]]) -> Reply:
        # Rough token counts (4 chars a token) so usage events can be exercised offline.
        usage = Usage(_content_chars(messages) // 4, len(content) // 4, cost=0.0)
        return Reply(content, calls, usage)
