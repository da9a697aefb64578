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

from runner.events import Event, MessageEvent, Status, StatusEvent, ToolCallOut, to_openai


@dataclass
class Transcript:
    """The state folded from a run's events, oldest first.

    - ``messages``: the chat the model is sent (OpenAI shape).
    - ``own_steps``: assistant messages this run committed (the scripted model's step
      index and what ``max_steps`` counts).
    - ``pending``: tool calls of the last assistant message that have no result yet.
    - ``requeue_reason``: the reason of the last ``queued`` status (why the previous
      attempt ended), empty if none.
    - ``seen`` and ``last_id``: how many events were folded and the stream id of the last,
      the cursor for fenced commits and for reading what came after.
    """

    messages: list[dict[str, Any]] = field(default_factory=list)
    own_steps: int = 0
    pending: list[ToolCallOut] = field(default_factory=list)
    requeue_reason: str = ""
    seen: int = 0
    last_id: str = "-"

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
            if isinstance(event, MessageEvent):
                self._message(event)
            elif isinstance(event, StatusEvent) and event.status is Status.QUEUED:
                self.requeue_reason = event.reason or ""
        if last_id is not None:
            self.last_id = last_id

    def _message(self, event: MessageEvent) -> None:
        self.messages.append(to_openai(event))
        if event.role == "assistant":
            self.own_steps += 1
            self.pending = list(event.tool_calls or [])
        elif event.role == "tool":
            self.pending = [c for c in self.pending if c.id != event.tool_call_id]
