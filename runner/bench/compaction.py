"""Section: a 500-step turn on a small context window (issue 13), per step at 500 vs at 10.

The real agent loop (``workers.agent.Turn``, in this process) plays a scripted turn that
reads a file at every step, against the bench's server, with a 4k-token window. The
fake model encodes what it is sent as JSON at every call, as a provider's SDK does, so a
view that grew with the transcript would show in the step time. With compaction the
view stays within the window and the step at 500 costs what the step at 10 does.
Medians over 20 steps each; steps that compacted count too (they are the price).
"""

from __future__ import annotations

import json
import time
from typing import Any

from runner.bench.context import Bench
from runner.bench.stats import Figure, Spread
from runner.errors import BenchError
from runner.events import CompactionEvent, Event, MessageEvent, Status, StatusEvent
from runner.keys import new_run_id
from runner.prompts import DEFAULT_SYSTEM, save_system

WINDOW = 4096
SAMPLES = 20  # steps per median
FILE_LINE = "a line of the file the turn reads at every step, some 60 bytes\n"


class _Timed:
    """The scripted model, timed at every call and made to encode what it is sent."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: list[float] = []
        self.sent: list[int] = []

    def complete(self, messages: list[dict[str, Any]], tools: Any, stop: Any, **kw: Any) -> Any:
        self.calls.append(time.perf_counter())
        self.sent.append(len(json.dumps(messages)))
        return self.inner.complete(messages, tools, stop, **kw)

    def __getattr__(self, name: str) -> Any:  # summarise, context_window, reports_usage
        return getattr(self.inner, name)


def _script(steps: int) -> str:
    write = {"path": "data.txt", "content": FILE_LINE * 16}  # about 1 kB a read
    first = {"content": "Writing the file.", "tool": "write_file", "args": write}
    step = {"content": "Reading it again.", "tool": "read_file", "args": {"path": "data.txt"}}
    return json.dumps({"steps": [first] + [step] * (steps - 1) + [{"content": "Done."}]})


def compaction_turn(b: Bench) -> list[Figure]:
    """The section's figures: one turn of 500 steps (120 when quick)."""
    from runner.script import parse_script
    from workers.agent import Turn
    from workers.providers.scripted import ScriptedModel
    from workers.stop import Stop

    steps = 500 if b.plan.commit_samples >= 1000 else 120
    run_id = new_run_id()
    fields = {"queue": b.name("none"), "model": "scripted", "title": "bench compaction"}
    fields.update(context_tokens=str(WINDOW), max_steps=str(steps + 1))
    save_system(b.redis, b.keys.system(run_id), DEFAULT_SYSTEM, 600_000)
    first: list[Event] = [
        StatusEvent(status=Status.QUEUED),
        MessageEvent(role="user", content="read"),
    ]
    b.store.create(run_id, fields, first)
    epoch = b.store.claim(run_id, "bench", 3600)  # no lease to keep: nobody sweeps it
    if epoch is None:
        raise BenchError(f"could not claim the bench run {run_id}")
    workspace = b.tmp / "compaction"
    workspace.mkdir(parents=True, exist_ok=True)
    model = _Timed(ScriptedModel(parse_script(_script(steps))))
    turn = Turn(b.store, run_id, epoch, model, Stop(5), b.settings, steps + 1, workspace, "bench")
    outcome = turn.run()
    if outcome.status is not Status.SUCCEEDED:
        raise BenchError(f"the compaction turn ended {outcome.status}: {outcome.error}")
    events = b.store.events(run_id)
    b.store.finish(run_id, epoch, Status.SUCCEEDED, "bench", "final answer")
    compactions = sum(1 for e in events if isinstance(e, CompactionEvent))
    per_step = [later - sooner for sooner, later in zip(model.calls, model.calls[1:], strict=False)]
    early = Spread.of(per_step[10 : 10 + SAMPLES])
    late = Spread.of(per_step[steps - SAMPLES : steps])
    uncompacted = sum(len(json.dumps(m)) for m in turn.transcript.messages)
    return [
        Figure(
            f"one step at step {steps} (model view + commits + tool)",
            "s",
            late,
            "the same at step 10",
            early,
            goal="≤ 1.5",
            note=(
                f"{compactions} compactions on a {WINDOW:,}-token window; sent at the last "
                f"step {model.sent[-1]:,} B, the whole transcript is {uncompacted:,} B"
            ),
            extra={
                "steps": steps,
                "compactions": compactions,
                "window": WINDOW,
                "last_sent_bytes": model.sent[-1],
                "transcript_bytes": uncompacted,
            },
        )
    ]
