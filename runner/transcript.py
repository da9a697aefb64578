"""The transcript fold: committed events in, the model's view of the turn out.

What the model is sent is a function of the committed events and nothing else (no I/O),
so a resumed attempt rebuilds exactly the view the last one had, and the live loop feeds
each batch it commits into the same fold. What the model is sent (``messages``) and what
counts as this run's own step (``own_steps``) are kept apart: compaction and sessions
change the first without touching the second.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from runner.context import View
from runner.events import (
    CompactionEvent,
    Event,
    MessageEvent,
    Status,
    StatusEvent,
    ToolCallOut,
    UsageEvent,
    to_openai,
)


@dataclass
class Transcript:
    """The state folded from a run's events, oldest first.

    - ``messages``: every message of the chat (OpenAI shape); what the model is sent is
      ``model_view(system)``, folded in ``view`` (runner/context.py: compactions).
    - ``own_steps``: assistant messages this run committed (the scripted model's step
      index and what ``max_steps`` counts).
    - ``pending``: tool calls of the last assistant message that have no result yet.
    - ``requeue_reason``: the reason of the last ``queued`` status (why the previous
      attempt ended), empty if none.
    - ``answered``: the last message is a final answer (no tool calls) that one of this
      run's attempts committed: an attempt that died between committing it and ending
      the run leaves the turn done, with nothing to ask the model again.
    - ``seen`` and ``last_id``: how many events were folded and the stream id of the last,
      the cursor for fenced commits and for reading what came after.
    """

    messages: list[dict[str, Any]] = field(default_factory=list)
    own_steps: int = 0
    pending: list[ToolCallOut] = field(default_factory=list)
    requeue_reason: str = ""
    seen: int = 0
    last_id: str = "-"
    view: View = field(default_factory=View)
    answered: bool = False
    _after_reply: bool = False  # the last event folded was an assistant message

    @classmethod
    def fold(cls, events: Iterable[Event], history: Iterable[dict[str, Any]] = ()) -> Transcript:
        """The transcript of ``events`` from the start of a run's stream.

        ``history``: the messages the run continues (a session's earlier turns, a fork's
        source; runner.sessions), sent to the model first and never counted as own steps.
        """
        transcript = cls(messages=list(history))
        transcript.add(events)
        return transcript

    def add(self, events: Iterable[Event], last_id: str | None = None) -> None:
        """Fold the next events of the stream into this transcript.

        ``last_id`` is the stream id of the last of them, for events that were just
        committed and so carry no id of their own.
        """
        for event in events:
            self.seen += 1
            if event.id:
                self.last_id = event.id
            after_reply, self._after_reply = self._after_reply, False
            if isinstance(event, MessageEvent):
                self._message(event)
            elif isinstance(event, StatusEvent) and event.status is Status.QUEUED:
                self.requeue_reason = event.reason or ""
            elif isinstance(event, UsageEvent) and after_reply:
                self.view.usage(len(self.messages), event.input_tokens + event.output_tokens)
            elif isinstance(event, CompactionEvent):
                self.view.compaction(self.messages, event)
        if last_id is not None:
            self.last_id = last_id

    def model_view(self, system: str) -> list[dict[str, Any]]:
        """What the model is sent: ``system``, the latest compaction summary, the rest."""
        return self.view.build(self.messages, system)

    def _message(self, event: MessageEvent) -> None:
        message = to_openai(event)
        self.messages.append(message)
        self.view.message(message)
        # Epoch 0 is what the run was created with (a fork's copied messages): never an
        # attempt's answer, so a fork cut after a final answer still goes on.
        self.answered = event.role == "assistant" and not event.tool_calls and event.epoch > 0
        if event.role == "assistant":
            self._after_reply = True
            self.own_steps += 1
            self.pending = list(event.tool_calls or [])
        elif event.role == "tool":
            self.pending = [c for c in self.pending if c.id != event.tool_call_id]
