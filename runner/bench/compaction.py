"""Section: a 500-step turn on a small context window (issue 13), per step at 500 vs at 10.

The real agent loop (``workers.agent.Turn``, in this process) plays a scripted turn that
reads a file at every step, against the bench's server, with a 4k-token window. The
fake model encodes what it is sent as JSON at every call, as a provider's SDK does, so a
view that grew with the transcript would show in the step time. With compaction the
view stays within the window and the step at 500 costs what the step at 10 does.
Two figures: building what the model is sent at step 500 and at step 10 (each folded
from the committed events, prepared and encoded, the samples interleaved so the
machine's load weighs on both alike), and the whole step as the turn ran (medians over
40 steps each; steps that compacted count too, they are the price; noisier).
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
SAMPLES = 40  # steps per median
VIEW_SAMPLES = 200  # builds of each request
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


def _view_costs(events: list[Event], steps: int, context: Any) -> tuple[Spread, Spread, str]:
    """Building the request of step ``steps`` and of step 10, from the committed events.

    Each transcript is folded up to just before that step's answer (its compactions
    included), then prepared and encoded as a provider would, alternately, so that the
    machine's load weighs on both alike.
    """
    from runner.transcript import Transcript
    from workers.tools import specs

    answers = [
        i for i, e in enumerate(events) if isinstance(e, MessageEvent) and e.role == "assistant"
    ]
    folds = [Transcript.fold(events[: answers[k]]) for k in (steps - 1, 10)]
    tools = specs()
    samples: tuple[list[float], list[float]] = ([], [])
    for _ in range(VIEW_SAMPLES):
        for fold, out in zip(folds, samples, strict=True):
            t0 = time.perf_counter()
            json.dumps(context.prepare(fold, tools))
            out.append(time.perf_counter() - t0)
    sizes = [len(json.dumps(context.prepare(fold, tools))) for fold in folds]
    whole: list[float] = []
    for _ in range(VIEW_SAMPLES // 10):  # the uncompacted request, for comparison
        t0 = time.perf_counter()
        json.dumps([{"role": "system", "content": context.system}, *folds[0].messages])
        whole.append(time.perf_counter() - t0)
    said = (
        f"requests of {sizes[0]:,} and {sizes[1]:,} B; uncompacted, step {steps}'s would be "
        f"{len(json.dumps(folds[0].messages)):,} B and take "
        f"{Spread.of(whole).median * 1000:.2f} ms to encode"
    )
    return Spread.of(samples[0]), Spread.of(samples[1]), said


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
    built, built_early, said = _view_costs(events, steps, turn.context)
    return [
        Figure(
            f"what the model is sent, built at step {steps}",
            "s",
            built,
            "the same at step 10",
            built_early,
            goal="≤ 1.5",
            note=f"Context.prepare on the fold, JSON-encoded, samples interleaved; {said}",
        ),
        Figure(
            f"one whole step at step {steps} (model view + commits + tool)",
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
        ),
    ]
