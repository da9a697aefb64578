"""What an attempt records around each step: spans, timings, metrics, the gate's counts.

The agent loop (``workers/agent.py``) decides what happens; this says what each step
cost. A model call and a tool call run inside their tracing span; a model call's time,
tokens and cost go to the metrics; a reply becomes its assistant message and usage event,
priced by the gate; a commit's time, and the time since the last step, go to the metrics,
and what it committed to the gate's budget counts.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from runner import metrics, tracing
from runner.events import Event, MessageEvent, ToolCallOut, UsageEvent
from workers.gate import Gate
from workers.providers import Model, Reply, ToolCall
from workers.providers.base import Sink, ToolSpec, Usage
from workers.stop import Stop
from workers.tools import ToolContext, ToolResult, run_tool


class Bookkeeping:
    """The per-step records of one attempt; the gate is the one the loop asks first."""

    def __init__(self, gate: Gate) -> None:
        self.gate = gate
        self._stepped = time.monotonic()  # when the last step was committed (its metric)

    def ask(
        self,
        model: Model,
        messages: list[dict[str, Any]],
        tools: Sequence[ToolSpec],
        stop: Stop,
        *,
        step: int,
        sink: Sink,
    ) -> Reply:
        """``model.complete`` in its span, its time and usage counted when it answers."""
        called = time.monotonic()
        with tracing.span("model call", step=step):
            reply = model.complete(messages, tools, stop, step=step, sink=sink)
        model_called(time.monotonic() - called, reply.usage)
        return reply

    @staticmethod
    def run(call: ToolCall, tools: ToolContext) -> ToolResult:
        """The tool call in its span."""
        with tracing.span("tool call", tool=call.name, call=call.id):
            return run_tool(call.name, call.arguments, tools, call.id)

    def reply_events(self, reply: Reply, messages: list[dict[str, Any]]) -> list[Event]:
        """The assistant message of ``reply`` and its usage event (priced by the gate)."""
        calls = [ToolCallOut(id=c.id, name=c.name, arguments=c.arguments) for c in reply.tool_calls]
        usage, estimated = self.gate.usage(reply, messages)
        return [
            MessageEvent(role="assistant", content=reply.content, tool_calls=calls or None),
            UsageEvent(
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cost=usage.cost,
                estimated=estimated or None,
                cache_read_tokens=usage.cache_read_tokens,
                cache_write_tokens=usage.cache_write_tokens,
            ),
        ]

    def committed(self, events: Sequence[Event], steps: int, started: float) -> None:
        """A commit of ``steps`` messages, begun at ``started`` (monotonic), is done."""
        now = time.monotonic()
        metrics.committed(steps, now - started, now - self._stepped if steps else None)
        if steps:
            self._stepped = now
        self.gate.add(events)


def steps_in(events: Sequence[Event]) -> int:
    """How many steps (messages) a commit of ``events`` adds."""
    return sum(1 for e in events if isinstance(e, MessageEvent))


def model_called(seconds: float, usage: Usage | None) -> None:
    """A model call's time, tokens and cost, to the metrics."""
    metrics.model_called(
        seconds,
        usage.input_tokens if usage else 0,
        usage.output_tokens if usage else 0,
        (usage.cost or 0) if usage else 0,
    )
