"""The turn's context, worker side: what each model call is sent, compacted when it must be.

:meth:`Context.prepare` is the one hook the agent calls before a model call. When the
view would not fit the window it plans a compaction (``runner.compaction``), asks the
model for the summary (followers get a progress note meanwhile), and commits the
``compaction`` event through the agent's fenced commit; the view is then rebuilt from
the fold, exactly as a resumed attempt would rebuild it. A stop during the summarising
call abandons it (Interrupted) with nothing committed: the next attempt plans the same
compaction again and sends the same request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from runner import metrics
from runner.compaction import ContextFull, Limits, Plan, SummaryRequest, describe, plan
from runner.compaction import summary_request as build_request
from runner.context import BYTES_PER_TOKEN, DEFAULT_WINDOW, estimate_tools, trim
from runner.events import CompactionEvent, Event, UsageEvent
from runner.prompts import DEFAULT_SYSTEM
from runner.providers import check_model_spec
from runner.settings import Settings
from runner.store import RunStore
from runner.transcript import Transcript
from workers.providers.base import NULL_SINK, Model, Reply, Sink, ToolSpec
from workers.stop import Stop

log = logging.getLogger("runner.compaction")
MAX_ROUNDS = 8  # compactions before one model call (a long history takes a few)


class _Notes:
    """A sink that passes a summarising call's progress notes on, and nothing it streams."""

    def __init__(self, sink: Sink) -> None:
        self._sink = sink

    def text(self, chunk: str) -> None:
        pass

    def args(self, call: int, name: str, chunk: str) -> None:
        pass

    def note(self, text: str) -> None:
        self._sink.note(text)

    def reset(self) -> None:
        pass


def window_of(model: Model, spec: str, stored: int, settings: Settings) -> int:
    """The run's context window: ``--context-tokens`` stored with it, else
    RUNNER_CONTEXT_TOKENS, else the provider's table, else :data:`DEFAULT_WINDOW`."""
    if stored:
        return stored
    if settings.context_tokens:
        return settings.context_tokens
    lookup = getattr(model, "context_window", None)
    known = lookup(check_model_spec(spec)[1]) if callable(lookup) else None
    return int(known) if known else DEFAULT_WINDOW


@dataclass
class Context:
    """What one attempt sends the model: system prompt, window, and the compactions."""

    model: Model
    system: str
    limits: Limits
    commit: Callable[[list[Event]], None]
    stop: Stop
    sink: Any = NULL_SINK  # the attempt's DeltaWriter: notes, and begin() after a commit
    fields: dict[str, Any] | None = None
    # The run's own usage accounting (workers.gate.Gate.usage): a summarising call is
    # counted, estimated and priced like any other model call, so budgets see it.
    price: Callable[[Reply, list[dict[str, Any]]], tuple[Any, bool]] | None = None

    @classmethod
    def open(
        cls,
        store: RunStore,
        run_id: str,
        model: Model,
        settings: Settings,
        commit: Callable[[list[Event]], None],
        stop: Stop,
        sink: Any = NULL_SINK,
        fields: dict[str, Any] | None = None,
        price: Callable[[Reply, list[dict[str, Any]]], tuple[Any, bool]] | None = None,
    ) -> Context:
        """The context of ``run_id``: its stored system prompt and window, in one round trip."""
        pipe = store.redis.pipeline(transaction=False)
        pipe.hmget(store.keys.record(run_id), ["model", "context_tokens"])
        pipe.get(store.keys.system(run_id))
        (spec, stored), text = pipe.execute()
        # A run stored before system prompts were (no key) gets the default.
        system = DEFAULT_SYSTEM if text is None else str(text)
        window = window_of(model, spec or "scripted", int(stored or 0), settings)
        return cls(model, system, Limits.of(window), commit, stop, sink, fields, price)

    def prepare(self, transcript: Transcript, tools: Sequence[ToolSpec]) -> list[dict[str, Any]]:
        """The messages of the next model call, compacting the transcript first if need be.

        Raises Interrupted (a stop during a summarising call), ContextFull, or whatever
        the model or a commit raises.
        """
        tools_tokens = estimate_tools(tools)
        reported = bool(getattr(self.model, "reports_usage", True))
        for _ in range(MAX_ROUNDS):
            found = plan(transcript, self.system, tools_tokens, self.limits, reported)
            if found is None:
                return transcript.model_view(self.system)
            self._compact(transcript, found)
        raise ContextFull(
            f"the turn still does not fit the context window ({self.limits.window:,} tokens) "
            f"after {MAX_ROUNDS} compactions"
        )

    def _compact(self, transcript: Transcript, found: Plan) -> None:
        n = len(transcript.messages)
        limits = self.limits
        event = CompactionEvent(
            trimmed=[n - i for i in found.trimmed] or None,
            trim_bytes=limits.trim_keep if found.trimmed else 0,
            tokens_before=found.tokens_before,
            tokens_after=found.tokens_after,
            window=limits.window,
        )
        events: list[Event] = [event]
        if found.cut is None:
            self._note(f"compacting: trimming {len(found.trimmed)} long tool outputs", found)
        else:
            request = build_request(transcript, found, limits)
            self._note(f"compacting: summarising messages {request.start + 1}-{request.cut}", found)
            reply = self._summarise(request)
            summary = reply.content.strip() or describe(request)
            # A summary over twice its allowed length is cut, so it cannot crowd out the rest.
            summary = trim(summary, limits.summary_tokens * BYTES_PER_TOKEN * 2)
            event.summary = summary
            event.keep = n - found.cut
            event.replaced = found.cut - transcript.view.start
            if self.price is not None:
                usage, estimated = self.price(reply, request.messages)
                events.append(UsageEvent(**_usage(usage), estimated=estimated or None))
            elif reply.usage is not None:
                events.append(UsageEvent(**_usage(reply.usage)))
        self.commit(events)
        begin = getattr(self.sink, "begin", None)
        if callable(begin):  # the next call's deltas come after the compaction
            begin(transcript.last_id)
        log.info(
            "compacted",
            extra={
                **(self.fields or {}),
                "replaced": event.replaced,
                "trimmed": len(found.trimmed),
                "tokens_before": found.tokens_before,
                "tokens_after": found.tokens_after,
            },
        )

    def _note(self, what: str, found: Plan) -> None:
        window = self.limits.window
        self.sink.note(f"{what}: about {found.tokens_before:,} tokens, window {window:,}")

    def _summarise(self, request: SummaryRequest) -> Reply:
        """The model's summary: its own ``summarise`` if it has one, else a plain call."""
        started = time.monotonic()
        own = getattr(self.model, "summarise", None)
        sink = _Notes(self.sink)
        if callable(own):
            reply: Reply = own(request, self.stop, sink=sink)
        else:
            reply = self.model.complete(request.messages, [], self.stop, step=None, sink=sink)
        usage = reply.usage
        metrics.model_called(
            time.monotonic() - started,
            usage.input_tokens if usage else 0,
            usage.output_tokens if usage else 0,
            (usage.cost or 0) if usage else 0,
        )
        return reply


def _usage(usage: Any) -> dict[str, Any]:
    return {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cost": usage.cost,
    }
