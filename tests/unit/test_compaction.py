"""Compaction on its own: the view fold, the plan, the trims, the worker's compactor.

The view is a pure function of committed events, so every case folds events and looks
at what the model would be sent; the compactor cases commit into a fold of their own and
check that a fresh fold of the committed events (a resumed attempt) sends the same.
"""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from runner.compaction import ContextFull, Limits, describe, plan, summary_request
from runner.context import estimate, estimate_text, trim
from runner.events import (
    CompactionEvent,
    Event,
    MessageEvent,
    Status,
    StatusEvent,
    ToolCallOut,
    UsageEvent,
)
from runner.prompts import SUMMARY_HEADER
from runner.script import parse_script
from runner.transcript import Transcript
from workers.compactor import Context, window_of
from workers.providers import Interrupted, Reply, ToolSpec, Usage
from workers.providers.scripted import ScriptedModel
from workers.stop import Stop

SYSTEM = "You work alone."


def user(text: str) -> MessageEvent:
    return MessageEvent(role="user", content=text)


def answer(i: int, text: str = "") -> MessageEvent:
    call = ToolCallOut(id=f"c{i}", name="shell", arguments={"command": f"step {i}"})
    return MessageEvent(role="assistant", content=text or f"step {i}", tool_calls=[call])


def result(i: int, text: str = "ok") -> MessageEvent:
    return MessageEvent(role="tool", content=text, tool_call_id=f"c{i}", name="shell")


def steps(n: int, output: str = "ok", start: int = 0) -> list[Event]:
    events: list[Event] = []
    for i in range(start, start + n):
        events += [answer(i), result(i, output)]
    return events


def roles(view: list[dict[str, Any]]) -> list[str]:
    return [m["role"] for m in view]


# -- the fold -------------------------------------------------------------------------


def test_without_a_compaction_the_view_is_the_system_prompt_and_every_message() -> None:
    t = Transcript.fold([user("task"), *steps(2)])
    assert t.model_view(SYSTEM) == [{"role": "system", "content": SYSTEM}, *t.messages]
    assert t.model_view("") == t.messages  # no system prompt: nothing put in front


def test_a_summary_replaces_all_but_the_kept_messages_before_it() -> None:
    events = [
        user("task"),
        *steps(3),
        CompactionEvent(summary="did 0-1", keep=2),
        *steps(1, start=3),
    ]
    t = Transcript.fold(events)
    view = t.model_view(SYSTEM)
    assert roles(view) == ["system", "user", "assistant", "tool", "assistant", "tool"]
    assert view[1]["content"] == f"{SUMMARY_HEADER}\n\ndid 0-1"
    assert [m.get("tool_call_id") for m in view[2:]] == [None, "c2", None, "c3"]
    assert len(t.messages) == 9  # the transcript itself keeps every message


def test_the_latest_summary_wins_and_the_cut_never_moves_back() -> None:
    events = [
        user("task"),
        *steps(4),
        CompactionEvent(summary="first", keep=4),
        *steps(1, start=4),
        CompactionEvent(summary="second", keep=2),
        # A corrupt keep (more than there is) cannot bring old messages back.
        CompactionEvent(summary="third", keep=99),
    ]
    t = Transcript.fold(events)
    view = t.model_view(SYSTEM)
    assert view[1]["content"].endswith("third")
    assert roles(view[2:]) == ["assistant", "tool"] and view[2]["content"] == "step 4"


def test_trimmed_outputs_are_shown_trimmed_head_and_tail_with_the_bytes_counted() -> None:
    long = "HEAD" + "x" * 5000 + "TAIL"
    events = [user("task"), *steps(2, long), CompactionEvent(trimmed=[3], trim_bytes=300)]
    t = Transcript.fold(events)
    view = t.model_view(SYSTEM)
    shown = view[3]["content"]  # c0's result: 3 back from the event
    assert shown.startswith("HEAD") and shown.endswith("TAIL")
    assert "[... 4,708 bytes trimmed to fit the context window ...]" in shown
    assert view[5]["content"] == long  # the latest result is untouched
    assert t.messages[2]["content"] == long


@pytest.mark.parametrize("keep", [10, 11, 12, 200, 599])
def test_trim_cuts_on_character_boundaries_and_counts_what_it_left_out(keep: int) -> None:
    text = "é" * 300  # two bytes each: some cuts fall inside a character
    cut = trim(text, keep)
    head, rest = cut.split("\n[... ", 1)
    dropped = int(rest.split(" bytes", 1)[0].replace(",", ""))
    tail = rest.rsplit("...]\n", 1)[1]
    assert set(head + tail) <= {"é"}
    assert len(head.encode()) + len(tail.encode()) + dropped == 600
    assert trim(text, 600) == text


def test_positions_are_relative_so_a_prefix_before_the_stream_changes_nothing() -> None:
    own = [user("next"), *steps(3), CompactionEvent(summary="s", keep=2, trimmed=[1], trim_bytes=8)]
    alone = Transcript.fold(own).model_view(SYSTEM)
    prefixed = Transcript.fold([user("earlier turn"), *steps(5, start=10), *own]).model_view(SYSTEM)
    assert prefixed == alone


def test_folding_in_batches_is_folding_at_once() -> None:
    events = [user("task"), *steps(6, "y" * 3000)]
    events.insert(9, CompactionEvent(summary="s", keep=4, trimmed=[2], trim_bytes=100))
    live = Transcript()
    for i in range(0, len(events), 3):
        live.add(events[i : i + 3])
    assert live.model_view(SYSTEM) == Transcript.fold(events).model_view(SYSTEM)
    assert live.view.sizes == Transcript.fold(events).view.sizes


def test_reported_usage_counts_until_a_compaction_changes_the_view() -> None:
    t = Transcript.fold([user("task"), answer(0), UsageEvent(input_tokens=900, output_tokens=100)])
    t.add([result(0, "z" * 30)])
    assert t.view.tokens(SYSTEM, 50) == 1000 + estimate(t.messages[-1])
    assert t.view.tokens(SYSTEM, 50, reported=False) < 1000  # the estimate alone
    t.add(
        [CompactionEvent(trimmed=[1], trim_bytes=10), UsageEvent(input_tokens=7, output_tokens=3)]
    )
    # The compaction's own usage (the summarising call) says nothing about the view.
    assert t.view.reported is None
    assert t.view.tokens(SYSTEM, 50) == t.view.tokens(SYSTEM, 50, reported=False)


# -- the plan -------------------------------------------------------------------------


def test_a_view_that_fits_needs_nothing() -> None:
    t = Transcript.fold([user("task"), *steps(3)])
    assert plan(t, SYSTEM, 100, Limits.of(8192)) is None


def test_oversized_old_outputs_are_trimmed_first_oldest_first() -> None:
    limits = Limits.of(8192)
    big = "b" * (limits.trim_over + 2000)
    events = [user("task"), *steps(5, big), *steps(2, start=5)]
    t = Transcript.fold(events)
    found = plan(t, SYSTEM, 100, limits)
    assert found is not None and found.cut is None  # trimming was enough
    assert found.trimmed[:2] == (2, 4) and len(found.trimmed) < 5
    assert found.tokens_after <= limits.budget < found.tokens_before


@pytest.mark.parametrize("output", ["o" * 200, "o" * 1500])
def test_a_long_turn_is_cut_at_an_answer_never_between_a_call_and_its_result(output: str) -> None:
    limits = Limits.of(8192)
    t = Transcript.fold([user("task"), *steps(80, output)])
    found = plan(t, SYSTEM, 100, limits)
    assert found is not None and found.cut is not None
    assert t.messages[found.cut]["role"] == "assistant"
    request = summary_request(t, found, limits)
    assert request.start == 0 and request.cut == found.cut
    assert estimate_text(json.dumps(request.messages)) <= limits.budget
    assert f"messages 1 to {found.cut}" in request.messages[1]["content"]


def test_a_window_too_small_for_the_latest_step_is_a_clear_error() -> None:
    huge = "h" * 60_000
    t = Transcript.fold([user("task"), answer(0), result(0, huge), result(0, huge)])
    t.add([CompactionEvent(summary="s", keep=3)])
    with pytest.raises(ContextFull, match=r"context window \(2,048 tokens\) is too small"):
        plan(t, "s" * 9000, 100, Limits.of(2048))


def test_describe_names_what_it_replaces() -> None:
    limits = Limits.of(8192)
    t = Transcript.fold([user("fix the bug"), *steps(80, "o" * 300)])
    found = plan(t, SYSTEM, 100, limits)
    assert found is not None and found.cut is not None
    text = describe(summary_request(t, found, limits))
    assert text.startswith(
        f"Summary of messages 1-{found.cut}. This compaction replaces messages 1-"
    )
    assert "tool calls: shell x" in text and "User said: fix the bug" in text


# -- the worker's compactor ------------------------------------------------------------


class Summariser:
    """A model without ``summarise``: its summary comes from ``complete`` with no tools."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[dict[str, Any]], list[ToolSpec]]] = []

    def complete(self, messages: Any, tools: Any, stop: Stop, **kwargs: Any) -> Reply:
        self.calls.append((messages, list(tools)))
        if stop.requested.is_set():
            raise Interrupted
        return Reply("what happened so far", [], Usage(1234, 56))


class Deltas:
    """What a follower would be told meanwhile (the attempt's DeltaWriter in a worker)."""

    def __init__(self) -> None:
        self.notes: list[str] = []
        self.begun: list[str] = []

    def note(self, text: str) -> None:
        self.notes.append(text)

    def begin(self, after: str) -> None:
        self.begun.append(after)


def compactor(
    model: Any, window: int, committed: list[Event], t: Transcript, sink: Any = None
) -> Context:
    def commit(events: list[Event]) -> None:
        committed.extend(events)
        t.add(events, last_id=f"{len(committed)}-0")

    return Context(model, SYSTEM, Limits.of(window), commit, Stop(5), sink or Deltas())


def test_prepare_compacts_commits_and_a_fresh_fold_sends_the_same() -> None:
    events: list[Event] = [StatusEvent(status=Status.QUEUED), user("task"), *steps(60, "r" * 400)]
    t = Transcript.fold(events)
    committed: list[Event] = []
    model = Summariser()
    deltas = Deltas()
    context = compactor(model, 8192, committed, t, deltas)
    sent = context.prepare(t, [ToolSpec("shell", "Run a command")])
    assert [e.type for e in committed] == ["compaction", "usage"]
    # Followers were told, and the next call's deltas come after the compaction.
    assert len(deltas.notes) == 1 and deltas.notes[0].startswith(
        "compacting: summarising messages 1-"
    )
    assert deltas.begun == ["2-0"]
    compaction = committed[0]
    assert isinstance(compaction, CompactionEvent) and compaction.summary == "what happened so far"
    assert model.calls[0][1] == []  # the summarising call offers no tools
    assert estimate_text(json.dumps(sent)) < 8192 and roles(sent)[:3] == [
        "system",
        "user",
        "assistant",
    ]
    # A resumed attempt folds the stream as committed, and sends exactly this.
    assert Transcript.fold([*events, *committed]).model_view(SYSTEM) == sent
    assert context.prepare(t, [ToolSpec("shell", "Run a command")]) == sent  # nothing more to do


def test_a_summarising_call_is_counted_and_priced_like_any_model_call() -> None:
    """Budgets see what compaction spends: its usage goes through the run's pricing."""
    from workers.providers.base import Usage

    events: list[Event] = [StatusEvent(status=Status.QUEUED), user("task"), *steps(60, "r" * 400)]
    t = Transcript.fold(events)
    committed: list[Event] = []
    context = compactor(Summariser(), 8192, committed, t)
    priced: list[int] = []

    def price(reply: Any, messages: list[dict[str, Any]]) -> tuple[Usage, bool]:
        priced.append(len(messages))
        return Usage(1000, 50, 0.25), True

    context.price = price
    context.prepare(t, [ToolSpec("shell", "Run a command")])
    usage = committed[1]
    assert isinstance(usage, UsageEvent) and priced
    assert (usage.input_tokens, usage.output_tokens, usage.cost, usage.estimated) == (
        1000,
        50,
        0.25,
        True,
    )


def test_a_stop_during_the_summary_commits_nothing() -> None:
    t = Transcript.fold([user("task"), *steps(60, "r" * 400)])
    committed: list[Event] = []
    context = compactor(Summariser(), 8192, committed, t)
    context.stop.request()
    with pytest.raises(Interrupted):
        context.prepare(t, [])
    assert committed == []


def test_the_scripted_model_summarises_outside_its_script() -> None:
    script = parse_script(json.dumps({"steps": [{"content": "only step"}]}))
    model = ScriptedModel(script)
    t = Transcript.fold([user("task"), *steps(100, "r" * 300)])
    committed: list[Event] = []
    context = compactor(model, 4096, committed, t)
    context.prepare(t, [])
    summaries = [e.summary for e in committed if isinstance(e, CompactionEvent)]
    assert summaries and all(s and s.startswith("Summary of messages 1-") for s in summaries)
    # The script's own step is still the next answer (own_steps is what it plays).
    assert model.complete(t.model_view(SYSTEM), [], Stop(5), step=0).content == "only step"


def test_the_window_comes_from_the_run_then_the_setting_then_the_provider() -> None:
    from runner.settings import Settings
    from workers.providers.openai_chat import OpenAIModel

    gpt = OpenAIModel("gpt-4o-mini")
    assert window_of(gpt, "openai:gpt-4o-mini", 5000, Settings(context_tokens=9000)) == 5000
    assert window_of(gpt, "openai:gpt-4o-mini", 0, Settings(context_tokens=9000)) == 9000
    assert window_of(gpt, "openai:gpt-4o-mini", 0, Settings()) == 128_000
    assert window_of(gpt, "openai:my-local-model", 0, Settings()) == 32_768
    scripted = ScriptedModel(parse_script('{"steps": []}'))
    assert window_of(scripted, "scripted", 0, Settings()) == 1_000_000


def test_a_compaction_renders_what_it_did_with_the_summary_escaped() -> None:
    from rich.console import Console

    from runner.cli.render import event_text, events

    ev = CompactionEvent(summary="did \x1b[2J it", keep=4, replaced=30, trimmed=[2], window=8192)
    ev = ev.model_copy(update={"ts": "2026-01-01T00:00:00.000Z", "tokens_before": 9000})
    text = event_text(ev).plain
    assert "compaction: 30 messages summarised, 4 kept, 1 tool outputs trimmed" in text
    assert "~9,000 → ~0 of 8,192 tokens" in text and "did \\x1b[2J it" in text
    console = Console(file=io.StringIO(), width=200, record=True, no_color=True)
    events(console, [ev, UsageEvent(input_tokens=12, output_tokens=3)])
    assert console.export_text().endswith("it  (12 in, 3 out)\n")  # its usage folds in
