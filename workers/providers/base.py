"""What every model provider shares: the reply, tool calls, neutral tool specs, the protocol.

A model call is a safe point: when a stop is requested while the model thinks, the call
is abandoned with :class:`Interrupted` and nothing is committed for it.

Optional hooks a provider may have (``workers/compactor.py`` looks them up with
``getattr``; see :class:`ContextHooks`): ``context_window(model)``, its models' windows;
``reports_usage`` (False: its usage is an estimate, so the shared estimate counts
instead); ``summarise(request, stop, sink=...)``, its own compaction answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from workers.stop import Stop

# How often a caller waiting on a provider call looks at the stop request.
POLL_SECONDS = 0.1


@dataclass(frozen=True)
class ToolSpec:
    """A tool as a model is told about it; each provider maps it to its own wire shape."""

    name: str
    description: str
    parameters: dict[str, Any] = field(default_factory=dict)  # a JSON schema


@dataclass(frozen=True)
class ToolCall:
    """One tool call the model asked for."""

    id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class Usage:
    """Tokens in and out of one model call, and its cost when known.

    ``input_tokens`` counts every token the model was sent; of those, the provider's
    prompt cache served ``cache_read_tokens`` and stored ``cache_write_tokens``.
    """

    input_tokens: int
    output_tokens: int
    cost: float | None = None
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None


@dataclass(frozen=True)
class Reply:
    """A model answer: text, plus tool calls unless it is the final answer."""

    content: str
    tool_calls: list[ToolCall]
    usage: Usage | None = None


class Interrupted(Exception):
    """The model call was abandoned because a stop was requested; nothing to commit."""


class Sink(Protocol):
    """Where a provider pushes what it streams (``runner.deltas.DeltaWriter`` in a worker).

    Calls must be cheap and never raise: the writer buffers and writes in the background.
    """

    def text(self, chunk: str) -> None:
        """Streamed text of the answer."""

    def args(self, call: int, name: str, chunk: str) -> None:
        """Streamed arguments (JSON text) of tool call number ``call``."""

    def note(self, text: str) -> None:
        """A progress note (a retry back-off, say)."""

    def reset(self) -> None:
        """The call starts over: what was streamed so far is superseded."""


class NullSink:
    """A sink that drops everything (no follower to tell, or a test that does not look)."""

    def text(self, chunk: str) -> None:
        pass

    def args(self, call: int, name: str, chunk: str) -> None:
        pass

    def note(self, text: str) -> None:
        pass

    def reset(self) -> None:
        pass


NULL_SINK = NullSink()


class Model(Protocol):
    """Anything that answers a conversation with a :class:`Reply`."""

    def complete(
        self,
        messages: list[dict[str, Any]],
        tools: Sequence[ToolSpec],
        stop: Stop,
        *,
        step: int | None = None,
        sink: Sink = NULL_SINK,
    ) -> Reply:
        """Answer ``messages`` (OpenAI chat shape); raise Interrupted on a stop.

        ``step`` is this run's own step count (its committed assistant messages);
        what the model streams goes to ``sink`` as it arrives.
        """
        ...


class ContextHooks(Protocol):
    """The optional hooks of a provider that compaction uses (none is required)."""

    reports_usage: bool  # whether a Reply's usage is what the provider counted

    def context_window(self, model: str) -> int | None:
        """The context window of ``model`` in tokens; None when it is not known."""
        ...
