"""The run store against a real server: fencing, claims, idempotent commits, sweeps, TTLs."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from rq import Queue

from runner.errors import CorruptEvent, NoSuchRun, StaleEpoch
from runner.events import MessageEvent, Status, StatusEvent, UsageEvent
from runner.keys import new_run_id
from runner.settings import Settings
from runner.store import Beat, RunStore
from workers import sweeper
from workers.sweeper import SweepReport

LEASE = 5.0
MAX_DIRTY = 3


def new_run(store: RunStore, script: str = "") -> str:
    """A queued run, as ``submit`` creates it."""
    run_id = new_run_id()
    fields = {"queue": "default", "model": "scripted", "max_steps": "10", "title": "t"}
    first = [
        StatusEvent(status=Status.QUEUED, reason="submitted"),
        MessageEvent(role="user", content="hello"),
    ]
    store.create(run_id, fields, first, script)
    return run_id


def assistant(text: str) -> MessageEvent:
    return MessageEvent(role="assistant", content=text)


def raw(store: RunStore, run_id: str) -> tuple[Any, ...]:
    """The run's stream, record, lease and inbox exactly as the server holds them."""
    r = store.redis
    k = store.keys
    return (
        r.xrange(k.events(run_id)),
        r.hgetall(k.record(run_id)),
        r.get(k.lease(run_id)),
        r.lrange(k.inbox(run_id), 0, -1),
    )


def die(store: RunStore, run_id: str, epoch: int) -> Status | None:
    """The attempt's process died (the worker noticed at once, lease still there)."""
    return store.requeue_dead(run_id, "test death", MAX_DIRTY, epoch=epoch, lease_gone=False)


def test_stale_epoch_is_rejected_and_changes_nothing(store: RunStore) -> None:
    run_id = new_run(store)
    old = store.claim(run_id, "w1", LEASE)
    assert old == 1
    store.commit(run_id, 1, [assistant("from attempt 1")], seen=3)
    # The attempt is taken over: requeued and claimed again by another worker.
    assert die(store, run_id, 1) is Status.QUEUED
    new = store.claim(run_id, "w2", LEASE)
    assert new == 2
    store.send(run_id, "steer")
    before = raw(store, run_id)
    seen = len(before[0])
    assert before[3] == ["steer"]

    with pytest.raises(StaleEpoch):
        store.commit(run_id, 1, [assistant("stale")], seen=seen)
    with pytest.raises(StaleEpoch):
        store.finish(run_id, 1, Status.SUCCEEDED, "w1", "final answer")
    with pytest.raises(StaleEpoch):
        store.drain_inbox(run_id, 1)
    assert store.heartbeat(run_id, 1, LEASE) is Beat.FENCED
    assert store.requeue_dead(run_id, "x", MAX_DIRTY, epoch=1, lease_gone=False) is None

    assert raw(store, run_id) == before
    record = store.get(run_id)
    assert (record.status, record.epoch, record.worker) == (Status.RUNNING, 2, "w2")
    # The current attempt still writes.
    store.commit(run_id, 2, [assistant("from attempt 2")], seen=seen)


def test_writes_to_a_run_that_is_not_running_are_fenced(store: RunStore) -> None:
    run_id = new_run(store)
    before = raw(store, run_id)
    with pytest.raises(StaleEpoch):
        store.commit(run_id, 0, [assistant("never claimed")], seen=2)
    with pytest.raises(StaleEpoch):
        store.finish(run_id, 0, Status.SUCCEEDED)
    assert raw(store, run_id) == before


def test_claim_only_takes_queued_runs_and_bumps_the_epoch(store: RunStore) -> None:
    run_id = new_run(store)
    assert store.claim(run_id, "w1", LEASE) == 1
    record = store.get(run_id)
    assert (record.status, record.epoch, record.worker) == (Status.RUNNING, 1, "w1")
    assert store.redis.get(store.keys.lease(run_id)) == "1"
    assert 0 < store.redis.pttl(store.keys.lease(run_id)) <= LEASE * 1000
    assert run_id in store.active_ids()
    assert run_id not in store.queued_ids()
    running = store.events(run_id)[-1]
    assert isinstance(running, StatusEvent)
    assert (running.status, running.worker, running.epoch) == (Status.RUNNING, "w1", 1)

    # Running: a second claim (a duplicate job, a second worker) gets nothing.
    assert store.claim(run_id, "w2", LEASE) is None
    assert store.get(run_id).epoch == 1

    # Back in the queue, the next claim is a new attempt.
    die(store, run_id, 1)
    assert store.claim(run_id, "w2", LEASE) == 2

    store.finish(run_id, 2, Status.SUCCEEDED, "w2", "final answer")
    assert store.claim(run_id, "w3", LEASE) is None
    assert store.get(run_id).epoch == 2

    with pytest.raises(NoSuchRun):
        store.get(new_run_id())
    assert store.claim(new_run_id(), "w1", LEASE) is None


def test_claim_of_a_run_cancelled_during_handover_cancels_it(store: RunStore) -> None:
    run_id = new_run(store)
    store.claim(run_id, "w1", LEASE)
    store.cancel(run_id)  # running: only the flag is set
    die(store, run_id, 1)  # its worker died before it saw the flag
    assert store.claim(run_id, "w2", LEASE) is None
    assert store.get(run_id).status is Status.CANCELLED
    # Ended, so it expires with the retention like any other ended run.
    for key in (store.keys.record(run_id), store.keys.events(run_id)):
        assert 0 < store.redis.pttl(key) <= store.retention_ms, key


def test_commit_retried_after_a_lost_reply_is_applied_once(store: RunStore) -> None:
    run_id = new_run(store)
    store.claim(run_id, "w1", LEASE)
    seen = len(store.events(run_id))
    events = [assistant("thinking"), MessageEvent(role="tool", content="ok", tool_call_id="c1")]
    first = store.commit(run_id, 1, events, seen=seen, steps=2)
    again = store.commit(run_id, 1, events, seen=seen, steps=2)
    assert again == first
    stream = store.events(run_id)
    assert len(stream) == seen + 2
    assert [e.content for e in stream[-2:] if isinstance(e, MessageEvent)] == ["thinking", "ok"]
    assert stream[-1].id == first.last_id
    assert store.get(run_id).steps == 2

    # A writer that missed events (the stream moved on without it) is refused.
    with pytest.raises(StaleEpoch, match="saw"):
        store.commit(run_id, 1, [assistant("late")], seen=seen - 1)
    assert len(store.events(run_id)) == seen + 2


def test_commit_is_one_round_trip(store: RunStore, monkeypatch: pytest.MonkeyPatch) -> None:
    run_id = new_run(store)
    store.claim(run_id, "w1", LEASE)
    seen = len(store.events(run_id))
    store.commit(run_id, 1, [assistant("warm the script cache")], seen=seen)
    calls: list[tuple[Any, ...]] = []
    real = store.redis.execute_command

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(store.redis, "execute_command", counting)
    commit = store.commit(run_id, 1, [assistant("one"), assistant("two")], seen=seen + 1)
    assert [c[0] for c in calls] == ["EVALSHA"]
    assert commit.inbox == 0


def test_commit_updates_the_record(store: RunStore) -> None:
    run_id = new_run(store)
    store.claim(run_id, "w1", LEASE)
    # Zeroed first, so only the commit itself can move them.
    store.redis.hset(store.keys.record(run_id), "updated_ms", 0)
    store.redis.zadd(store.keys.runs, {run_id: 0})
    store.commit(run_id, 1, [assistant("a")], seen=3)
    record = store.get(run_id)
    assert record.steps == 1
    assert record.updated_ms > 0
    assert store.redis.zscore(store.keys.runs, run_id) == record.updated_ms


def test_racing_sweepers_requeue_once(store: RunStore, server: Any) -> None:
    run_id = new_run(store)
    store.claim(run_id, "w1", LEASE)
    store.redis.delete(store.keys.lease(run_id))  # the lease expired
    stores = [RunStore(server.client(), store.keys) for _ in range(8)]
    barrier = threading.Barrier(len(stores))
    results: list[Status | None] = []

    def sweep(s: RunStore) -> None:
        barrier.wait()
        results.append(s.requeue_dead(run_id, "lease expired", MAX_DIRTY))

    threads = [threading.Thread(target=sweep, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert not any(t.is_alive() for t in threads)
    assert sorted(results, key=str) == [None] * 7 + [Status.QUEUED]
    requeues = [
        e
        for e in store.events(run_id)
        if isinstance(e, StatusEvent) and e.reason == "lease expired"
    ]
    assert len(requeues) == 1
    assert requeues[0].worker == "w1"
    record = store.get(run_id)
    assert (record.status, record.dirty) == (Status.QUEUED, 1)
    assert run_id in store.queued_ids()
    assert run_id not in store.active_ids()


def test_racing_full_sweeps_requeue_and_push_once(store: RunStore, server: Any) -> None:
    """Whole sweeps (index reads, scripts, RQ pushes) on eight connections at once."""
    dead = [new_run(store) for _ in range(3)]
    for run_id in dead:
        store.claim(run_id, "w1", LEASE)
        store.redis.delete(store.keys.lease(run_id))
    store.redis.sadd(store.keys.active, "../x")  # and one bad entry for all of them
    settings = Settings(redis_url=server.url, lease_seconds=LEASE)
    sweepers = [(RunStore(server.client(), store.keys), server.client(False)) for _ in range(8)]
    barrier = threading.Barrier(len(sweepers))
    reports: list[SweepReport] = []
    errors: list[BaseException] = []

    def run(s: RunStore, rq_conn: Any) -> None:
        barrier.wait()
        try:
            reports.append(sweeper.sweep(s, rq_conn, settings))
        except BaseException as exc:  # a sweep that raises fails the test below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=pair) for pair in sweepers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    requeued = [i for r in reports for i in r.requeued]
    assert sorted(requeued) == sorted(dead)
    jobs = Queue("default", connection=server.client(False)).job_ids
    assert sorted(jobs) == sorted(dead), "each run pushed to its queue exactly once"
    assert store.redis.smembers(store.keys.active) == set()
    for run_id in dead:
        assert store.get(run_id).dirty == 1


def test_create_with_a_session_indexes_it(store: RunStore) -> None:
    run_id = new_run_id()
    store.create(run_id, {"queue": "default", "model": "m"}, [], session="team.a")
    created = store.get(run_id).created_ms
    assert store.redis.zscore(store.keys.session("team.a"), run_id) == created
    assert store.redis.zscore(store.keys.sessions, "team.a") == created
    assert 0 < store.redis.pttl(store.keys.session("team.a")) <= store.retention_ms


def test_requeue_waits_for_the_lease(store: RunStore) -> None:
    run_id = new_run(store)
    store.claim(run_id, "w1", LEASE)
    assert store.requeue_dead(run_id, "lease expired", MAX_DIRTY) is None
    assert store.get(run_id).status is Status.RUNNING


def test_crash_loop_suspends_and_a_committed_step_resets_it(store: RunStore) -> None:
    run_id = new_run(store)
    # MAX_DIRTY restarts in a row are allowed; the death after them suspends the run.
    for attempt in range(1, MAX_DIRTY + 1):
        assert store.claim(run_id, "w1", LEASE) == attempt
        assert die(store, run_id, attempt) is Status.QUEUED
        assert store.get(run_id).dirty == attempt
    last = MAX_DIRTY + 1
    assert store.claim(run_id, "w1", LEASE) == last
    assert die(store, run_id, last) is Status.SUSPENDED
    record = store.get(run_id)
    assert record.status is Status.SUSPENDED
    assert "crash loop" in record.reason
    assert f"{MAX_DIRTY + 1} attempts" in record.reason
    assert "test death" in record.reason
    assert store.claim(run_id, "w1", LEASE) is None
    suspended = store.events(run_id)[-1]
    assert isinstance(suspended, StatusEvent)
    assert suspended.status is Status.SUSPENDED

    assert store.resume(run_id) is Status.SUSPENDED
    record = store.get(run_id)
    assert (record.status, record.dirty) == (Status.QUEUED, 0)

    # Two dirty deaths, then an attempt that commits a step: the count starts over.
    for _ in range(2):
        epoch = store.claim(run_id, "w1", LEASE)
        assert epoch is not None
        die(store, run_id, epoch)
    assert store.get(run_id).dirty == 2
    epoch = store.claim(run_id, "w1", LEASE)
    assert epoch is not None
    store.commit(run_id, epoch, [assistant("progress")], seen=len(store.events(run_id)))
    assert store.get(run_id).dirty == 0
    # A commit that is not a step (usage only, steps=0) does not reset it.
    die(store, run_id, epoch)
    epoch = store.claim(run_id, "w1", LEASE)
    assert epoch is not None
    usage = UsageEvent(input_tokens=1, output_tokens=1)
    store.commit(run_id, epoch, [usage], seen=len(store.events(run_id)), steps=0)
    assert store.get(run_id).dirty == 1


def test_cancel_of_a_running_run_sets_the_flag(store: RunStore) -> None:
    run_id = new_run(store)
    store.claim(run_id, "w1", LEASE)
    events_before = len(store.events(run_id))
    assert store.cancel(run_id) is Status.RUNNING
    record = store.get(run_id)
    assert record.cancel is True
    assert record.status is Status.RUNNING
    assert len(store.events(run_id)) == events_before, "the worker writes the end itself"
    assert store.heartbeat(run_id, 1, LEASE) is Beat.CANCEL
    store.finish(run_id, 1, Status.CANCELLED, "w1", "cancelled by user")
    assert store.get(run_id).status is Status.CANCELLED


def test_cancel_of_a_queued_run_ends_it(store: RunStore) -> None:
    run_id = new_run(store, script='{"steps": []}')
    assert store.cancel(run_id) is Status.QUEUED
    record = store.get(run_id)
    assert record.status is Status.CANCELLED
    assert run_id not in store.queued_ids()
    last = store.events(run_id)[-1]
    assert isinstance(last, StatusEvent)
    assert last.status is Status.CANCELLED
    for key in (store.keys.record(run_id), store.keys.events(run_id), store.keys.script(run_id)):
        assert store.redis.pttl(key) > 0, key
    # Cancelling again reports what it was and changes nothing.
    n = len(store.events(run_id))
    assert store.cancel(run_id) is Status.CANCELLED
    assert len(store.events(run_id)) == n
    with pytest.raises(NoSuchRun):
        store.cancel(new_run_id())


def test_heartbeat_keeps_the_lease(store: RunStore) -> None:
    run_id = new_run(store)
    store.claim(run_id, "w1", 0.5)
    assert store.heartbeat(run_id, 1, LEASE) is Beat.OK
    assert store.redis.pttl(store.keys.lease(run_id)) > 1000


@pytest.mark.parametrize("status", [Status.SUCCEEDED, Status.FAILED, Status.CANCELLED])
def test_finish_sets_ttls_on_terminal_runs(store: RunStore, status: Status) -> None:
    run_id = new_run(store, script='{"steps": []}')
    store.claim(run_id, "w1", LEASE)
    store.send(run_id, "left unread")
    store.finish(run_id, 1, status, "w1", "done", "boom" if status is Status.FAILED else "")
    k = store.keys
    assert not store.redis.exists(k.lease(run_id))
    for key in (k.record(run_id), k.events(run_id), k.script(run_id), k.inbox(run_id)):
        ttl = store.redis.pttl(key)
        assert 0 < ttl <= store.retention_ms, (key, ttl)
    record = store.get(run_id)
    assert record.status is status
    assert run_id not in store.active_ids()
    if status is Status.FAILED:
        assert record.error == "boom"


def test_handoff_finish_keeps_the_run(store: RunStore) -> None:
    run_id = new_run(store)
    store.claim(run_id, "w1", LEASE)
    store.finish(run_id, 1, Status.QUEUED, "w1", "handoff")
    k = store.keys
    assert store.redis.pttl(k.record(run_id)) == -1
    assert store.redis.pttl(k.events(run_id)) == -1
    record = store.get(run_id)
    assert (record.status, record.reason, record.dirty) == (Status.QUEUED, "handoff", 0)
    assert run_id in store.queued_ids()
    assert store.claim(run_id, "w2", LEASE) == 2


def test_send_and_drain_inbox(store: RunStore) -> None:
    run_id = new_run(store)
    store.claim(run_id, "w1", LEASE)
    assert store.send(run_id, "first") is Status.RUNNING
    assert store.send(run_id, "second") is Status.RUNNING
    commit = store.commit(run_id, 1, [assistant("a")], seen=3)
    assert commit.inbox == 2
    assert store.drain_inbox(run_id, 1) == 2
    users = [
        e.content for e in store.events(run_id) if isinstance(e, MessageEvent) and e.role == "user"
    ]
    assert users == ["hello", "first", "second"]
    store.finish(run_id, 1, Status.SUCCEEDED)
    assert store.send(run_id, "too late") is Status.SUCCEEDED
    assert store.redis.llen(store.keys.inbox(run_id)) == 0
    with pytest.raises(NoSuchRun):
        store.send(new_run_id(), "anyone?")


@pytest.mark.parametrize(
    "fields",
    [
        {"v": "1", "type": "message", "epoch": "1", "data": "{not json"},
        {"v": "1", "type": "message", "epoch": "1", "data": '{"role": "robot", "content": ""}'},
        {"v": "1", "type": "gossip", "epoch": "1", "data": "{}"},
        {"v": "1", "type": "status", "epoch": "one", "data": '{"status": "queued"}'},
        {"v": "1", "type": "status", "data": '{"status": "queued"}'},
        {"v": "99", "type": "status", "epoch": "1", "data": '{"status": "queued"}'},
        {"v": "1", "type": "status", "epoch": "1", "data": "[1, 2]"},
    ],
    ids=["not-json", "bad-role", "unknown-type", "bad-epoch", "no-epoch", "future", "not-obj"],
)
def test_malformed_entry_names_run_and_entry(store: RunStore, fields: dict[str, str]) -> None:
    run_id = new_run(store)
    bad_id = store.redis.xadd(store.keys.events(run_id), fields)
    for read in (
        lambda: store.events(run_id),
        lambda: store.tail(run_id, 1),
        lambda: store.read(run_id, "0-0", 10),
    ):
        with pytest.raises(CorruptEvent) as info:
            read()
        message = str(info.value)
        assert run_id in message
        assert bad_id in message
        assert len(message.splitlines()) == 1
    # The entries before it still read.
    assert len(store.events(run_id, count=2)) == 2


def test_list_runs_by_status(store: RunStore) -> None:
    queued, running, done = new_run(store), new_run(store), new_run(store)
    store.claim(running, "w1", LEASE)
    store.claim(done, "w1", LEASE)
    store.finish(done, 1, Status.SUCCEEDED)
    assert [r.id for r in store.list_runs(Status.QUEUED)] == [queued]
    assert [r.id for r in store.list_runs(Status.RUNNING)] == [running]
    assert [r.id for r in store.list_runs(Status.SUCCEEDED)] == [done]
    assert {r.id for r in store.list_runs()} == {queued, running, done}
    assert len(store.list_runs(limit=2)) == 2
