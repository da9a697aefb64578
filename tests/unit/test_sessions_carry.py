"""What a session's next turn and a fork take over (runner/carry.py), on fakeredis."""

from __future__ import annotations

import fakeredis
import pytest

from runner import carry
from runner.client import Submission
from runner.events import MessageEvent, Status, StatusEvent, UsageEvent
from runner.forking import carried_steps
from runner.keys import Keys, new_run_id
from runner.session_admin import split_queue
from runner.store import RunStore

GIVEN = {
    "max_steps": "50",
    "max_tokens": "1000",
    "max_cost": "2.0",
    "max_time": "3600.0",
    "max_tool_calls": "20",
    "approve": "shell",
    "context_tokens": "6000",
}


@pytest.fixture
def store() -> RunStore:
    return RunStore(fakeredis.FakeRedis(decode_responses=True), Keys("t"))


def made(store: RunStore, fields: dict[str, str], system: str | None = "be brief") -> str:
    run_id = new_run_id()
    record = {"queue": "q", "model": "scripted", **fields, carry.SNAPSHOT: carry.snapshot(fields)}
    if system is not None:
        store.redis.set(store.keys.system(run_id), system)
    store.create(run_id, record, [StatusEvent(status=Status.QUEUED)])
    return run_id


def test_the_next_turn_takes_what_the_submit_leaves_out(store: RunStore) -> None:
    prev = made(store, GIVEN)
    taken = carry.inherit(store, prev, Submission(prompt="p"))
    assert (taken.fields, taken.system) == (GIVEN, "be brief")
    own = Submission(prompt="p", max_cost=5.0, approve=("x",), system="mine", context_tokens=0)
    taken = carry.inherit(store, prev, own)
    assert set(GIVEN) - set(taken.fields) == {"max_cost", "approve", "context_tokens"}
    assert taken.system is None, "the submit's own prompt is used"


def test_the_snapshot_not_a_raise_is_what_a_turn_gets(store: RunStore) -> None:
    prev = made(store, GIVEN)
    store.redis.hincrbyfloat(store.keys.record(prev), "max_cost", 10)  # runner resume --add-cost
    assert carry.given(store, prev).fields["max_cost"] == "2.0"
    assert float(carry.given(store, prev, current=True).fields["max_cost"]) == 12.0


def test_a_run_without_a_snapshot_or_with_a_damaged_one_carries_its_record(
    store: RunStore,
) -> None:
    prev = made(store, {"max_steps": "7"}, system=None)
    store.redis.hdel(store.keys.record(prev), carry.SNAPSHOT)
    assert carry.given(store, prev) == carry.Carried({"max_steps": "7"}, None)
    store.redis.hset(store.keys.record(prev), carry.SNAPSHOT, "{not json")
    assert carry.given(store, prev).fields == {"max_steps": "7"}


def test_a_fork_takes_the_usage_of_the_steps_it_copies() -> None:
    def usage(cost: float) -> UsageEvent:
        return UsageEvent(input_tokens=1, output_tokens=1, cost=cost)

    events = [
        MessageEvent(role="user", content="go"),
        MessageEvent(role="assistant", content="a"),
        usage(1.0),
        MessageEvent(role="tool", content="r", tool_call_id="c", name="shell"),
        MessageEvent(role="assistant", content="b"),
        usage(2.0),
    ]
    kept = carried_steps(events, 3)
    assert [getattr(e, "content", None) or getattr(e, "cost", None) for e in kept] == [
        "go",
        "a",
        1.0,
        "r",
    ]
    assert all(not e.id and e.epoch == 0 for e in kept)


@pytest.mark.parametrize(
    ("queue", "split"),
    [
        ("q", ("q", "normal")),
        ("q:high", ("q", "high")),
        ("q:low", ("q", "low")),
        (":low", (":low", "normal")),
    ],
)
def test_a_runs_queue_splits_into_queue_and_priority(queue: str, split: tuple[str, str]) -> None:
    assert split_queue(queue) == split
