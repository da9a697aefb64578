"""Sessions, fork and purge: the pure folds, and the scripts on fakeredis (issue 14)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import fakeredis
import pytest

from runner import sessions
from runner.errors import BadInput, WrongState
from runner.events import (
    MessageEvent,
    Status,
    StatusEvent,
    ToolCallOut,
    WorkspaceChange,
    WorkspaceEvent,
)
from runner.forking import safe_cut, workspace_at
from runner.keys import Keys, new_run_id
from runner.purge import parse_age
from runner.settings import Settings
from runner.store import RunStore
from runner.transcript import Transcript


def user(text: str) -> MessageEvent:
    return MessageEvent(role="user", content=text)


def asks(*ids: str) -> MessageEvent:
    calls = [ToolCallOut(id=i, name="shell", arguments={"command": "ls"}) for i in ids]
    return MessageEvent(role="assistant", content="calling", tool_calls=calls)


def result(call: str) -> MessageEvent:
    return MessageEvent(role="tool", content="ok", tool_call_id=call, name="shell")


ANSWER = MessageEvent(role="assistant", content="done")
TWO_CALLS = [user("go"), asks("a", "b"), result("a"), result("b"), ANSWER]


@pytest.mark.parametrize(
    ("asked", "cut"),
    [(0, 0), (1, 1), (2, 1), (3, 1), (4, 4), (5, 5), (99, 5)],
)
def test_a_cut_never_separates_a_call_from_its_result(asked: int, cut: int) -> None:
    assert safe_cut(TWO_CALLS, asked) == cut


def file(path: str, digest: str) -> WorkspaceChange:
    return WorkspaceChange(path=path, kind="file", hash=digest, size=1, mode=0o644)


def test_workspace_at_folds_the_start_and_steps_before_the_cut() -> None:
    events = [
        user("go"),
        WorkspaceEvent(changes=[file("start.txt", "0" * 64)], epoch=0),
        asks("a"),
        result("a"),
        WorkspaceEvent(changes=[file("a.txt", "a" * 64)], epoch=1),
        asks("b"),
        result("b"),
        WorkspaceEvent(changes=[WorkspaceChange(path="a.txt", kind="deleted")], epoch=1),
    ]
    assert sorted(workspace_at(events, 1)) == ["start.txt"]
    assert sorted(workspace_at(events, 3)) == ["a.txt", "start.txt"]
    assert sorted(workspace_at(events, 5)) == ["start.txt"]


def test_history_goes_first_and_is_not_an_own_step() -> None:
    history = [{"role": "user", "content": "turn 1"}, {"role": "assistant", "content": "one"}]
    folded = Transcript.fold([user("turn 2"), ANSWER], history)
    assert [m["content"] for m in folded.messages] == ["turn 1", "one", "turn 2", "done"]
    assert folded.own_steps == 1


def test_history_round_trips() -> None:
    raw = sessions.dump_history(TWO_CALLS)
    assert sessions.parse_history(raw) == TWO_CALLS
    assert sessions.parse_history(None) == []


@pytest.mark.parametrize(("text", "seconds"), [("7d", 604800), ("12h", 43200), ("90", 90)])
def test_ages(text: str, seconds: int) -> None:
    assert parse_age(text) == seconds


@pytest.mark.parametrize("text", ["", "7 days", "-1d", "1y", "1e9"])
def test_bad_ages(text: str) -> None:
    with pytest.raises(BadInput, match="not an age"):
        parse_age(text)


@pytest.fixture
def store() -> RunStore:
    return RunStore(fakeredis.FakeRedis(decode_responses=True), Keys("t"))


def turn(store: RunStore, session: str, mode: str = "queue", **cfg: Any) -> tuple[str, Any]:
    run_id = new_run_id()
    settings = Settings(redis_url="redis://h:1/0", **cfg)
    plan = sessions.plan_turn(store, run_id, session, mode, settings)
    fields = {"queue": "q", "model": "scripted", "prev": plan.prev}
    store.create(run_id, fields, [StatusEvent(status=Status.QUEUED), user("hi")], session=session)
    return run_id, plan


def end(store: RunStore, run_id: str, status: str = "succeeded") -> None:
    store.redis.hset(store.keys.record(run_id), "status", status)


def test_plans_first_next_held_and_busy(store: RunStore) -> None:
    first, plan = turn(store, "s")
    assert plan == sessions.Plan()
    second, plan = turn(store, "s")
    assert (plan.prev, plan.held) == (first, True), "the first turn is still queued"
    with pytest.raises(WrongState, match=f"turn {second} is queued"):
        turn(store, "s", "reject")
    end(store, first)
    end(store, second, "cancelled")
    third, plan = turn(store, "s", "reject")
    assert (plan.prev, plan.held) == (second, False)
    assert sessions.still_held(store, [first, second, third]) == set()


def test_an_idle_session_expires_and_says_so(store: RunStore) -> None:
    first, _ = turn(store, "s")
    end(store, first)
    store.redis.zadd(store.keys.sessions, {"s": 1})  # last active long ago
    _, plan = turn(store, "s", session_idle_seconds=60)
    assert plan.prev == "" and "session s had expired (idle over 1m)" in plan.note
    assert store.redis.zcard(store.keys.session("s")) == 1, "the old turns left the session"


def test_a_held_turn_is_held_until_its_turn_before_ends(store: RunStore) -> None:
    first, _ = turn(store, "s")
    second, _ = turn(store, "s")
    assert sessions.still_held(store, [second]) == {second}
    end(store, first)
    assert sessions.still_held(store, [second]) == set()


def test_a_history_expires_with_its_run(store: RunStore) -> None:
    run_id, _ = turn(store, "s")
    store.redis.set(store.keys.history(run_id), sessions.dump_history([user("before")]))
    store.cancel(run_id)
    assert 0 < store.redis.pttl(store.keys.history(run_id)) <= store.retention_ms


def test_rename_moves_the_turns_and_refuses_a_taken_name(store: RunStore) -> None:
    from runner import session_admin

    first, _ = turn(store, "old")
    turn(store, "taken")
    with pytest.raises(WrongState, match="session taken already exists"):
        session_admin.rename(store, "old", "taken")
    assert session_admin.rename(store, "old", "new") == 1
    assert store.get(first).session == "new"
    assert store.redis.zscore(store.keys.sessions, "old") is None
    assert store.redis.zscore(store.keys.sessions, "new") is not None
    with pytest.raises(BadInput, match="no such session: old"):
        session_admin.rename(store, "old", "other")


def test_expired_runs_leave_the_index_with_their_file_blobs(
    store: RunStore, tmp_path: Path
) -> None:
    from runner.purge import forget_expired
    from runner.workspace.blobs import open_blobs

    url = f"file://{tmp_path / 'blobs'}"
    cfg = Settings(redis_url="redis://h:1/0", workspace_store=url)
    kept, _ = turn(store, "s")
    expired = new_run_id()
    blobs = open_blobs(cfg, store.redis, store.keys, expired)
    blobs.put({hashlib.sha256(b"x").hexdigest(): b"x"})
    store.redis.zadd(store.keys.runs, {kept: 1, expired: 1, "not-an-id": 1})
    assert forget_expired(store, cfg, cutoff_ms=10) == 1
    assert store.redis.zscore(store.keys.runs, kept) == 1, "a run that still exists stays"
    assert store.redis.zscore(store.keys.runs, expired) is None
    assert not any(expired in str(p) for p in (tmp_path / "blobs").rglob("*"))
