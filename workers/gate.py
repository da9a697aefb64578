"""The gate a turn passes before each model call and each tool call: budgets and approvals.

Limits are checked where steps are committed: the next thing after any commit is a model
call or a tool call, and both ask here first. A limit reached, or a tool that needs an
approval it has not had, gives a :class:`runner.parking.Park` and the attempt ends as
``waiting`` before anything more is spent or run.

Tools that need approval: ``RUNNER_APPROVE_TOOLS`` of this worker, the run's own
``submit --approve TOOL``, and any tool flagged ``approval = True`` in the registry.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from typing import Any

from runner import budgets, context, prices
from runner.budgets import Limits, Spent
from runner.events import Event
from runner.parking import Park, approval_reason, untouched
from runner.settings import Settings
from runner.store import RunRecord
from workers.providers import Reply
from workers.providers.base import ToolCall, Usage
from workers.tools import TOOLS

log = logging.getLogger("runner.gate")


class Gate:
    """One attempt's view of its run's limits, spending and approvals."""

    def __init__(self, settings: Settings, max_steps: int) -> None:
        self.settings = settings
        self.limits = Limits(max_steps)
        self.spent = Spent()
        self.model = ""
        self.run_id = "ID"
        self.approve = set(settings.approve_tools)
        self.approved = ""
        self.untouched = False
        self.started = time.monotonic()
        self.prices = prices.load(settings.prices)

    def load(self, record: RunRecord, events: Sequence[Event]) -> None:
        """Take the run's limits and approvals from its record, its spending from its stream."""
        self.limits = Limits.of(record, self.limits.steps)
        self.spent = Spent.fold(events)
        self.model = record.model
        self.run_id = record.id
        self.approve |= {name for name in record.approve.split(",") if name}
        self.approved = record.approved
        self.untouched = untouched(events)
        self.started = time.monotonic()

    def add(self, events: Sequence[Event]) -> None:
        """Count what this attempt just committed."""
        self.spent.add(events)

    def seconds(self) -> float:
        """Running time of the run so far: ended attempts, plus this one."""
        return self.spent.running_ms / 1000 + time.monotonic() - self.started

    def before_model(self, steps: int) -> Park | None:
        """A Park if a limit is reached (``steps``: this run's model calls so far)."""
        if steps >= self.limits.steps:
            reason = f"max steps ({self.limits.steps}) reached; raise it with: " + (
                f"runner resume {self.run_id} --add-steps N"
            )
            return Park(reason, "steps")
        if self.limits.cost and prices.price_of(self.prices, self.model) is None:
            # A cost limit this worker cannot count must not pass silently.
            reason = f"a cost limit is set, but {self.model} has no price on this worker: " + (
                f"add it to RUNNER_PRICES (USD per 1M tokens), then runner resume {self.run_id}"
            )
            return Park(reason, "cost")
        return self._budget()

    def before_tool(self, call: ToolCall) -> Park | None:
        """A Park if a limit is reached or ``call`` needs an approval it has not had."""
        held = self._budget()
        if held is not None:
            return held
        if call.id != self.approved and self._needs_approval(call.name):
            reason = approval_reason(call.name, call.arguments, self.run_id)
            return Park(reason, "approval", call.id, call.name)
        return None

    def _needs_approval(self, name: str) -> bool:
        return name in self.approve or bool(getattr(TOOLS.get(name), "approval", False))

    def _budget(self) -> Park | None:
        hit = budgets.reached(self.limits, self.spent, self.seconds(), self.run_id)
        return None if hit is None else Park(hit[1], hit[0])

    def usage(self, reply: Reply, messages: list[dict[str, Any]]) -> tuple[Usage, bool]:
        """The call's usage, priced from the table if the provider gave no cost.

        A provider that reports no usage is counted by the shared estimate (flagged so).
        """
        usage, estimated = reply.usage, False
        if usage is None:
            sent = sum(context.estimate(m) for m in messages)
            said = reply.content + "".join(str(c.arguments) for c in reply.tool_calls)
            usage = Usage(sent, context.estimate_text(said))
            estimated = True
        if usage.cost is None:
            cost = prices.cost(self.prices, self.model, usage.input_tokens, usage.output_tokens)
            usage = dataclasses.replace(usage, cost=cost)
        return usage, estimated
