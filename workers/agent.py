"""The agent loop: model call, commit, tools, commit, until a final answer or a stop.

Guarantee 1: the model's answer is committed before any tool runs, and each tool result
before the next model call. Guarantee 5: on resume, a tool call with no committed result
is re-run if the tool is idempotent, else answered with an "interrupted" message.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_exponential

from runner.connection import RETRYABLE
from runner.errors import StaleEpoch
from runner.events import (
    Event,
    MessageEvent,
    Status,
    StatusEvent,
    ToolCallOut,
    UsageEvent,
    to_openai,
)
from runner.settings import Settings
from runner.store import RunStore
from workers.providers import Interrupted, Model, Reply
from workers.stop import Stop
from workers.tools import TOOLS, ToolContext, run_tool
from workers.tools import specs as tool_specs

log = logging.getLogger("runner.agent")


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended. ``status`` None means fenced: write nothing more."""

    status: Status | None
    reason: str = ""
    error: str = ""


class Turn:
    """One attempt at a run, from the last commit on."""

    def __init__(
        self,
        store: RunStore,
        run_id: str,
        epoch: int,
        model: Model,
        stop: Stop,
        settings: Settings,
        max_steps: int,
        workspace: Path,
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.epoch = epoch
        self.model = model
        self.stop = stop
        self.settings = settings
        self.max_steps = max_steps
        self.tools = ToolContext(
            workspace=workspace,
            stop=stop,
            timeout=settings.tool_timeout,
            output_bytes=settings.tool_output_bytes,
        )
        self.messages: list[dict[str, Any]] = []
        self.seen = 0  # events in the stream, as this attempt knows it
        self.inbox = 0
        self.last_requeue_reason = ""
        # Built once: it wraps every commit, the hot path of a turn.
        self._retry = Retrying(
            retry=retry_if_exception_type(RETRYABLE),
            wait=wait_exponential(multiplier=0.2, max=5),
            stop=stop_after_delay(settings.reconnect_seconds),
            reraise=True,
        )

    def run(self) -> Outcome:
        """Run until the turn ends or stops; never raises for a fenced attempt."""
        try:
            self._replay()
            self._repair()
            return self._loop()
        except StaleEpoch as exc:
            log.warning("fenced: %s", exc, extra={"run": self.run_id, "epoch": self.epoch})
            return Outcome(None, "fenced")

    def _loop(self) -> Outcome:
        while True:
            if self.stop:
                return self._stopped()
            if self._assistant_count() >= self.max_steps:
                return Outcome(Status.FAILED, f"max steps ({self.max_steps}) reached")
            if self.inbox:
                self._take_inbox()
            try:
                reply = self.model.complete(self.messages, tool_specs(), self.stop)
            except Interrupted:
                return self._stopped()
            except Exception as exc:
                log.exception("model call failed", extra={"run": self.run_id})
                return Outcome(Status.FAILED, "model error", f"{type(exc).__name__}: {exc}")
            self._commit_reply(reply)
            if not reply.tool_calls:
                return Outcome(Status.SUCCEEDED, "final answer")
            for call in reply.tool_calls:
                if self.stop.hurry.is_set():
                    return self._stopped()
                result = run_tool(call.name, call.arguments, self.tools)
                self._commit_tool(call.id, call.name, result.content)
                if result.interrupted:
                    return self._stopped()

    def _stopped(self) -> Outcome:
        if self.stop.reason == "cancel":
            return Outcome(Status.CANCELLED, "cancelled by user")
        if self.stop.reason == "fenced":
            return Outcome(None, "fenced")
        return Outcome(Status.QUEUED, "handoff")

    # -- replay and repair --------------------------------------------------------------

    def _replay(self) -> None:
        events = self.store.events(self.run_id)
        self.seen = len(events)
        for event in events:
            if isinstance(event, MessageEvent):
                self.messages.append(to_openai(event))
            elif isinstance(event, StatusEvent) and event.status is Status.QUEUED:
                self.last_requeue_reason = event.reason or ""

    def _repair(self) -> None:
        """Answer the tool calls of the last assistant message that have no result."""
        pending = self._pending_calls()
        for call in pending:
            if self.stop.hurry.is_set():
                return
            tool = TOOLS.get(call["function"]["name"])
            name = call["function"]["name"]
            if tool is not None and tool.idempotent:
                args = _arguments(call)
                log.info("re-running idempotent tool %s", name, extra={"run": self.run_id})
                content = run_tool(name, args, self.tools).content
            else:
                content = self._interrupted_note()
            self._commit_tool(call["id"], name, content)

    def _pending_calls(self) -> list[dict[str, Any]]:
        for index in range(len(self.messages) - 1, -1, -1):
            msg = self.messages[index]
            if msg["role"] == "assistant":
                answered = {m.get("tool_call_id") for m in self.messages[index + 1 :]}
                return [c for c in msg.get("tool_calls", []) if c["id"] not in answered]
        return []

    def _interrupted_note(self) -> str:
        cause = (
            "by a handoff"
            if self.last_requeue_reason == "handoff"
            else f"when its worker was lost ({self.last_requeue_reason or 'unknown'})"
        )
        return (
            f"interrupted: this call was interrupted {cause} before its result was recorded; "
            "it may or may not have taken effect"
        )

    # -- commits ------------------------------------------------------------------------

    def _commit_reply(self, reply: Reply) -> None:
        calls = [ToolCallOut(id=c.id, name=c.name, arguments=c.arguments) for c in reply.tool_calls]
        events: list[Event] = [
            MessageEvent(role="assistant", content=reply.content, tool_calls=calls or None)
        ]
        if reply.usage is not None:
            events.append(
                UsageEvent(
                    input_tokens=reply.usage.input_tokens,
                    output_tokens=reply.usage.output_tokens,
                    cost=reply.usage.cost,
                )
            )
        self._commit(events)

    def _commit_tool(self, call_id: str, name: str, content: str) -> None:
        self._commit([MessageEvent(role="tool", content=content, tool_call_id=call_id, name=name)])

    def _commit(self, events: list[Event]) -> None:
        steps = sum(1 for e in events if isinstance(e, MessageEvent))
        commit = self._retrying(
            lambda: self.store.commit(self.run_id, self.epoch, events, self.seen, steps)
        )
        self.seen += len(events)
        self.inbox = commit.inbox
        self.messages.extend(to_openai(e) for e in events if isinstance(e, MessageEvent))

    def _take_inbox(self) -> None:
        self._retrying(lambda: self.store.drain_inbox(self.run_id, self.epoch))
        fresh = self.store.events(self.run_id)[self.seen :]
        self.seen += len(fresh)
        self.messages.extend(to_openai(e) for e in fresh if isinstance(e, MessageEvent))
        self.inbox = 0

    def _retrying(self, fn: Any) -> Any:
        return self._retry(fn)

    def _assistant_count(self) -> int:
        return sum(1 for m in self.messages if m["role"] == "assistant")


def _arguments(call: dict[str, Any]) -> dict[str, Any]:
    try:
        args = json.loads(call["function"]["arguments"])
    except (ValueError, KeyError):
        return {}
    return args if isinstance(args, dict) else {}
