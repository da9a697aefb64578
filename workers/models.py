"""Model providers behind one small interface: the scripted model and OpenAI.

A model call is a safe point: when a stop is requested while the model thinks, the call
is abandoned with :class:`Interrupted` and nothing is committed for it.
"""

from __future__ import annotations

import copy
import os
import signal
from dataclasses import dataclass
from typing import Any, Protocol

from runner.errors import BadInput
from runner.modelspec import check_model_spec
from runner.script import Script
from workers.stop import Stop

# How often a caller waiting on a provider call looks at the stop request.
_POLL_SECONDS = 0.1


@dataclass(frozen=True)
class ToolCall:
    """One tool call the model asked for."""

    id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class Usage:
    """Tokens in and out of one model call, and its cost when known."""

    input_tokens: int
    output_tokens: int
    cost: float | None = None


@dataclass(frozen=True)
class Reply:
    """A model answer: text, plus tool calls unless it is the final answer."""

    content: str
    tool_calls: list[ToolCall]
    usage: Usage | None = None


class Interrupted(Exception):
    """The model call was abandoned because a stop was requested; nothing to commit."""


class Model(Protocol):
    """Anything that answers a conversation with a :class:`Reply`."""

    def complete(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]],
        stop: Stop,
        *,
        step: int | None = None,
    ) -> Reply:
        """Answer ``messages`` (OpenAI chat shape); raise Interrupted on a stop.

        ``step`` is this run's own step count (its committed assistant messages).
        """
        ...


# ---------------------------------------------------------------------------- scripted


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
        tools: list[dict[str, Any]],
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


def load_model(spec: str, script: Script | None) -> Model:
    """The model a run's spec names: ``scripted`` or ``openai:<model>``."""
    provider, name = check_model_spec(spec)
    if provider == "scripted":
        if script is None:
            raise BadInput("the scripted model needs a script (--script FILE)")
        return ScriptedModel(script)
    # Imported here: the openai SDK takes over a second to import, which every worker
    # start would pay for.
    from workers.openai_model import OpenAIModel

    return OpenAIModel(name)
