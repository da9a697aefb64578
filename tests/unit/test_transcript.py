"""The transcript fold on its own: committed events in, the model's view out."""

from __future__ import annotations

from typing import Any

import pytest

from runner.events import (
    Event,
    MessageEvent,
    Status,
    StatusEvent,
    ToolCallOut,
    UsageEvent,
)
from runner.transcript import Transcript


def user(text: str) -> MessageEvent:
    return MessageEvent(role="user", content=text)


def assistant(text: str, *calls: str) -> MessageEvent:
    tool_calls = [ToolCallOut(id=c, name="shell", arguments={"command": c}) for c in calls]
    return MessageEvent(role="assistant", content=text, tool_calls=tool_calls or None)


def tool(call_id: str, text: str = "ok") -> MessageEvent:
    return MessageEvent(role="tool", content=text, tool_call_id=call_id, name="shell")


def status(value: Status, reason: str = "") -> StatusEvent:
    return StatusEvent(status=value, reason=reason or None)


USAGE = UsageEvent(input_tokens=1, output_tokens=2)


def with_ids(events: list[Event]) -> list[Event]:
    return [e.model_copy(update={"id": f"{i + 1}-0"}) for i, e in enumerate(events)]


CASES: list[tuple[str, list[Event], dict[str, Any]]] = [
    ("empty", [], {"steps": 0, "pending": [], "roles": [], "reason": ""}),
    (
        "prompt only",
        [status(Status.QUEUED), user("hi"), status(Status.RUNNING)],
        {"steps": 0, "pending": [], "roles": ["user"], "reason": ""},
    ),
    (
        "a call with its result",
        [user("hi"), assistant("look", "a"), tool("a"), USAGE],
        {"steps": 1, "pending": [], "roles": ["user", "assistant", "tool"], "reason": ""},
    ),
    (
        "a call whose result is missing",
        [user("hi"), assistant("look", "a"), status(Status.QUEUED, "handoff")],
        {"steps": 1, "pending": ["a"], "roles": ["user", "assistant"], "reason": "handoff"},
    ),
    (
        "two calls, one answered",
        [user("hi"), assistant("two", "a", "b"), tool("b")],
        {"steps": 1, "pending": ["a"], "roles": ["user", "assistant", "tool"], "reason": ""},
    ),
    (
        "final answer after tools",
        [user("hi"), assistant("x", "a"), tool("a"), assistant("done")],
        {"steps": 2, "pending": [], "roles": ["user", "assistant", "tool", "assistant"]},
    ),
    (
        "last requeue reason wins",
        [
            user("hi"),
            status(Status.QUEUED, "lease expired"),
            status(Status.RUNNING),
            status(Status.QUEUED, "handoff"),
        ],
        {"steps": 0, "pending": [], "roles": ["user"], "reason": "handoff"},
    ),
    (
        "a message sent mid-turn is part of the view, not a step",
        [user("hi"), assistant("x", "a"), tool("a"), user("also this")],
        {"steps": 1, "pending": [], "roles": ["user", "assistant", "tool", "user"]},
    ),
]


@pytest.mark.parametrize(("events", "want"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_fold(events: list[Event], want: dict[str, Any]) -> None:
    transcript = Transcript.fold(with_ids(events))
    assert transcript.own_steps == want["steps"]
    assert [c.id for c in transcript.pending] == want["pending"]
    assert [m["role"] for m in transcript.messages] == want["roles"]
    if "reason" in want:
        assert transcript.requeue_reason == want["reason"]
    assert transcript.seen == len(events)
    assert transcript.last_id == (f"{len(events)}-0" if events else "-")


@pytest.mark.parametrize("cut", range(7))
def test_folding_in_batches_is_folding_at_once(cut: int) -> None:
    """Live (each committed batch) and replay (the whole stream) build the same view."""
    events = with_ids(
        [user("hi"), assistant("x", "a"), tool("a"), user("more"), assistant("y", "b"), tool("b")]
    )
    live = Transcript.fold(events[:cut])
    live.add(events[cut:])
    assert live == Transcript.fold(events)


def test_messages_are_openai_shaped() -> None:
    transcript = Transcript.fold([user("hi"), assistant("x", "a"), tool("a", "out")])
    call = transcript.messages[1]["tool_calls"][0]
    assert call["id"] == "a"
    assert call["function"] == {"name": "shell", "arguments": '{"command": "a"}'}
    assert transcript.messages[2] == {
        "role": "tool",
        "content": "out",
        "tool_call_id": "a",
        "name": "shell",
    }


def test_committed_events_take_the_id_the_commit_returned() -> None:
    """Events just committed carry no stream id; the cursor is the commit's last id."""
    transcript = Transcript.fold(with_ids([user("hi")]))
    transcript.add([assistant("x", "a"), UsageEvent(input_tokens=1, output_tokens=1)], "9-1")
    assert (transcript.seen, transcript.last_id, transcript.own_steps) == (3, "9-1", 1)


def test_steps_are_counted_apart_from_what_the_model_is_sent() -> None:
    """What the model is sent may change (compaction, sessions); the step count may not."""
    transcript = Transcript.fold([user("hi"), assistant("x", "a"), tool("a")])
    transcript.messages[:] = [{"role": "system", "content": "summary"}]
    transcript.add([assistant("done")])
    assert transcript.own_steps == 2
    assert [m["role"] for m in transcript.messages] == ["system", "assistant"]


def at(epoch: int, event: MessageEvent) -> MessageEvent:  # as read back from the stream
    return event.model_copy(update={"epoch": epoch})


@pytest.mark.parametrize(
    ("events", "answered"),
    [
        ([user("hi")], False),
        ([user("hi"), at(1, assistant("x", "a"))], False),  # a call, not an answer
        ([user("hi"), at(1, assistant("x", "a")), at(1, tool("a"))], False),
        ([user("hi"), at(1, assistant("done"))], True),  # an attempt's final answer
        ([user("hi"), at(1, assistant("done")), UsageEvent(input_tokens=1, output_tokens=1)], True),
        ([user("hi"), at(2, assistant("done")), user("and then?")], False),  # sent after
        ([user("hi"), assistant("done")], False),  # epoch 0: copied by a fork, goes on
    ],
)
def test_a_final_answer_an_attempt_committed_ends_the_turn(
    events: list[Event], answered: bool
) -> None:
    assert Transcript.fold(events).answered is answered
