"""A randomized soak: concurrent turns, random SIGTERM/SIGKILL/SIGSTOP of workers, a pool
that replaces the dead, and a checker over every transcript (issue 4).

The seed is printed; ``RUNNER_SOAK_SEED=N`` replays the monkey's choices (process timing
still varies). ``python ops/soak.py`` runs the same thing bigger. The checker itself is
tested first, on transcripts broken on purpose.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import pytest

from runner.events import Event, MessageEvent, Status, StatusEvent, ToolCallOut
from tests.chaoslib import soak, transcript_problems
from tests.helpers import step_script

STEPS = step_script(2)


def good_events() -> list[Event]:
    """What a clean run of ``STEPS`` leaves in its stream (epoch 1, one attempt)."""
    events: list[Any] = [
        StatusEvent(status=Status.QUEUED, epoch=0),
        MessageEvent(role="user", content="p", epoch=0),
        StatusEvent(status=Status.RUNNING, epoch=1),
    ]
    for i, step in enumerate(STEPS):
        if "tool" not in step:
            events.append(MessageEvent(role="assistant", content=step["content"], epoch=1))
            continue
        call = ToolCallOut(id=f"call_{i}", name="shell", arguments=step["args"])
        events.append(
            MessageEvent(role="assistant", content=step["content"], tool_calls=[call], epoch=1)
        )
        events.append(
            MessageEvent(
                role="tool",
                content=f"out-{i}\nexit code 0",
                tool_call_id=f"call_{i}",
                name="shell",
                epoch=1,
            )
        )
    events.append(StatusEvent(status=Status.SUCCEEDED, epoch=1))
    for n, event in enumerate(events):
        event.id = f"{1000 + n}-0"
    return events


def test_checker_passes_a_clean_run() -> None:
    assert transcript_problems(good_events(), STEPS, "p") == []


def test_checker_catches_a_step_done_twice() -> None:
    events = good_events()
    events[5:5] = [events[3].model_copy(), events[4].model_copy()]
    assert transcript_problems(events, STEPS, "p")


def test_checker_catches_a_lost_step() -> None:
    events = good_events()
    del events[5:7]
    assert transcript_problems(events, STEPS, "p")


def test_checker_catches_steps_out_of_order() -> None:
    events = good_events()
    events[3:5], events[5:7] = events[5:7], events[3:5]
    assert transcript_problems(events, STEPS, "p")


def test_checker_catches_a_zombie_write() -> None:
    events = good_events()
    events.insert(5, StatusEvent(status=Status.RUNNING, epoch=2, id="1004-1"))
    events[6] = events[6].model_copy(update={"epoch": 1})  # the old attempt wrote on
    events[7:] = [e.model_copy(update={"epoch": 2}) for e in events[7:]]
    assert any("epoch 1 after epoch 2" in p for p in transcript_problems(events, STEPS, "p"))


def test_checker_interrupted_tool_call_only_when_not_exact() -> None:
    events = good_events()
    events[4] = events[4].model_copy(update={"content": "interrupted: worker lost"})
    assert transcript_problems(events, STEPS, "p")
    assert transcript_problems(events, STEPS, "p", exact=False) == []


def test_checker_wants_success() -> None:
    events = good_events()[:-1]
    assert transcript_problems(events, STEPS, "p") == ["last status is running"]


@pytest.mark.slow
def test_soak(env: dict[str, str], tmp_path: Path) -> None:
    seed = int(os.environ.get("RUNNER_SOAK_SEED") or random.randrange(1_000_000))
    print(f"\nsoak seed: {seed} (replay with RUNNER_SOAK_SEED={seed})")
    result = soak(
        env,
        tmp_path,
        turns=8,
        steps=6,
        workers=3,
        chaos_seconds=20,
        finish_seconds=40,
        seed=seed,
    )
    assert result.ok, f"seed {seed}: {result.problems}"
    assert result.actions, "the monkey did nothing"
    assert result.attempts > len(result.runs), "no run was ever interrupted"
