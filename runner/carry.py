"""What a session's next turn and a fork take over from the run they continue.

Carried: the run limits (``max_steps``, ``max_tokens``, ``max_cost``, ``max_time``,
``max_tool_calls``), the run's own ``--approve`` tools, its context window
(``--context-tokens``, when it had one) and its system prompt. A new submit that gives
one of them keeps its own; the ``RUNNER_MAX_...`` defaults apply only where neither the
submit nor the turn before says anything.

Limits are per turn, and what counts against them is what the run's own stream holds:

- The next turn of a session is a new turn: it gets the limits its conversation was
  *given* (the ``limits`` snapshot taken at submit, so a ``runner resume --add-...``
  that let one turn finish does not raise every later turn), and it starts having spent
  nothing, just as its step count starts at 0 (the earlier turns are its history).
- A fork is the same turn taken another way from a cut: it gets the source's limits as
  they are now (raises included) and carries what the source spent before the cut
  (its own messages up to the cut and their usage events), so it reaches a limit
  where the source would have. Running time is not carried.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from runner.store import RunStore

if TYPE_CHECKING:
    from runner.client import Submission

LIMITS = ("max_steps", "max_tokens", "max_cost", "max_time", "max_tool_calls")
CARRIED = (*LIMITS, "approve", "context_tokens")
SNAPSHOT = "limits"  # the record field: what the run was given at submit (JSON)


@dataclass(frozen=True)
class Carried:
    """The record fields a run takes over, and the system prompt (None: none stored)."""

    fields: dict[str, str] = field(default_factory=dict)
    system: str | None = None


def snapshot(fields: Mapping[str, str]) -> str:
    """The ``limits`` field of a run about to be created with ``fields``."""
    return json.dumps({k: fields[k] for k in CARRIED if k in fields}, sort_keys=True)


def given(store: RunStore, run_id: str, current: bool = False) -> Carried:
    """What ``run_id`` carries: its submitted limits (``current``: its record's now).

    A run created before the snapshot existed carries its record's values.
    """
    pipe = store.redis.pipeline(transaction=False)
    pipe.hmget(store.keys.record(run_id), [SNAPSHOT, *CARRIED])
    pipe.get(store.keys.system(run_id))
    (raw, *values), system = pipe.execute()
    now = {k: str(v) for k, v in zip(CARRIED, values, strict=True) if v is not None}
    fields = now
    if raw and not current:
        try:
            loaded = json.loads(raw)
            fields = {k: str(loaded[k]) for k in CARRIED if k in loaded}
        except (ValueError, TypeError):
            fields = now  # a damaged snapshot: the record's own values are the next best
    return Carried(fields, None if system is None else str(system))


def inherit(store: RunStore, prev: str, sub: Submission) -> Carried:
    """What the next turn after ``prev`` takes over: what ``sub`` does not give itself."""
    carried = given(store, prev)
    mine = {name for name in CARRIED if name != "approve" and getattr(sub, name) is not None}
    if sub.approve:
        mine.add("approve")
    fields = {k: v for k, v in carried.fields.items() if k not in mine}
    return Carried(fields, None if sub.system is not None else carried.system)
