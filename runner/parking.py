"""Parking: a run set aside as ``waiting`` with its worker freed, and the commands that requeue it.

One mechanism for budgets and approvals. The attempt that meets a limit, or a tool
that needs approval, ends with ``park.lua`` (fenced: status waiting, the reason, what
it waits for, the lease released) instead of ``finish.lua``. ``unpark.lua`` is the one
script behind ``resume`` (raise limits), ``approve`` and ``deny``: it checks the state
and requeues in one step, so an approval racing a cancel, a handoff or a second
approval is applied once and the loser gets WrongState.

A run parks *before* its next model call or tool call, so a tool call the model asked
for before it parked was never started: :func:`untouched` tells the next attempt so
from the stream, and that attempt runs the call instead of repairing it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from runner import queueing
from runner.budgets import Adds
from runner.errors import NoSuchRun, WrongState
from runner.events import Event, MessageEvent, Status, StatusEvent

if TYPE_CHECKING:
    from runner.client import Client
    from runner.store import RunStore

ARGS_SHOWN = 120  # a waiting reason shows the tool call's arguments cut to this


@dataclass(frozen=True)
class Park:
    """Why an attempt parks: the reason shown, what it waits for, the tool call held."""

    reason: str
    waiting_for: str  # "approval", or the limit reached: tokens, cost, time, tool_calls, steps
    call: str = ""
    tool: str = ""


def approval_reason(tool: str, arguments: dict[str, Any], run_id: str = "ID") -> str:
    """``needs approval: shell {"command": "rm -rf build"}`` (arguments shortened)."""
    shown = json.dumps(arguments, ensure_ascii=False, separators=(", ", ": "))
    if len(shown) > ARGS_SHOWN:
        shown = shown[: ARGS_SHOWN - 1] + "…"
    then = f"runner approve {run_id}, or runner deny {run_id} --reason R"
    return f"needs approval: {tool} {shown}; {then}"


def untouched(events: Iterable[Event]) -> bool:
    """Whether the pending tool calls at the end of ``events`` were never started.

    True when the attempt that committed the last message parked (``waiting``) and no
    attempt since has ended any other way: the requeue and the denial that ``unpark``
    writes carry the parked attempt's epoch, which no later attempt has. Any other end
    (a handoff, a lost worker) may have started a call, and resume repair applies.
    """
    parked: int | None = None
    for event in events:
        if isinstance(event, StatusEvent):
            if event.status is Status.WAITING:
                parked = event.epoch
            elif event.status is not Status.RUNNING and event.epoch != parked:
                parked = None
        elif isinstance(event, MessageEvent) and event.epoch != parked:
            parked = None
    return parked is not None


# -- the worker's side ----------------------------------------------------------------


def park(store: RunStore, run_id: str, epoch: int, worker: str, why: Park) -> str:
    """End attempt ``epoch`` as waiting; StaleEpoch if it no longer owns the run."""
    args = (epoch, worker, why.reason, why.waiting_for, why.call, why.tool)
    return str(store._call("park", run_id, *args))


# -- the client's side ----------------------------------------------------------------


def unpark(
    client: Client, run_id: str, action: str, reason: str = "", adds: Adds | None = None
) -> Status:
    """Requeue a parked run (``resume``, ``approve`` or ``deny``); the status it had."""
    record = client.get(run_id)
    args = (adds or Adds()).args()
    before, problem = client.store._call("unpark", run_id, action, reason, *args)
    if not before:
        raise NoSuchRun(f"no such run: {run_id}")
    if problem:
        raise WrongState(_refusal(run_id, action, Status(before), problem, record.waiting_for))
    queueing.push_front(client.rq, run_id, record.queue, client.settings.retention_seconds)
    return Status(before)


def _refusal(run_id: str, action: str, before: Status, problem: str, waiting_for: str) -> str:
    if problem == "approval":
        return f"run {run_id} waits for an approval: runner approve {run_id}, or runner deny"
    if problem == "budget":
        flag = "--add-" + waiting_for.replace("_", "-")
        return f"run {run_id} waits for its {waiting_for} budget, not an approval: " + (
            f"runner resume {run_id} {flag} ..."
        )
    wanted = "suspended or waiting" if action == "resume" else "waiting for an approval"
    return f"run {run_id} is {before.value}, not {wanted}"
