"""The run store, the client's follow loop and the CLI's error path, on fakeredis.

fakeredis runs the real Lua scripts (its Lua has ``cjson`` and ``TIME``), so these are
quick versions of the integration tests plus what is easier to provoke in memory: a
connection that drops mid-follow, a run that ends between two reads.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from importlib import resources
from typing import Any

import click
import fakeredis
import pytest
import redis
from click.testing import CliRunner

from runner import cli as cli_module
from runner import queueing
from runner.client import Client
from runner.errors import (
    BadInput,
    CorruptEvent,
    Damaged,
    NoSuchRun,
    ServerUnavailable,
    StaleEpoch,
)
from runner.events import MessageEvent, Status, StatusEvent
from runner.keys import RUN_KEYS, SCRIPT_KEYS, Keys, new_run_id
from runner.settings import Settings
from runner.store import Beat, RunStore, key_names
from workers import sweeper

LEASE = 5.0


@pytest.fixture
def store() -> RunStore:
    return RunStore(fakeredis.FakeRedis(decode_responses=True), Keys("t"))


def new_run(store: RunStore) -> str:
    run_id = new_run_id()
    store.create(
        run_id,
        {"queue": "default", "model": "scripted", "max_steps": "5"},
        [StatusEvent(status=Status.QUEUED), MessageEvent(role="user", content="hi")],
    )
    return run_id


def say(text: str) -> MessageEvent:
    return MessageEvent(role="assistant", content=text)


# -- the store ---------------------------------------------------------------------------


def test_create_writes_record_events_and_indexes(store: RunStore) -> None:
    run_id = new_run(store)
    record = store.get(run_id)
    assert (record.status, record.epoch, record.steps, record.dirty) == (Status.QUEUED, 0, 0, 0)
    assert record.created_ms > 0
    assert [e.type for e in store.events(run_id)] == ["status", "message"]
    assert store.queued_ids() == [run_id]
    with pytest.raises(BadInput, match="already exists"):
        store.create(run_id, {"queue": "q", "model": "m"}, [])


def test_fenced_writes(store: RunStore) -> None:
    run_id = new_run(store)
    assert store.claim(run_id, "w1", LEASE) == 1
    store.requeue_dead(run_id, "died", 3, epoch=1, lease_gone=False)
    assert store.claim(run_id, "w2", LEASE) == 2
    before = store.redis.xrange(store.keys.events(run_id))
    with pytest.raises(StaleEpoch, match="epoch 1"):
        store.commit(run_id, 1, [say("stale")], seen=len(before))
    assert store.heartbeat(run_id, 1, LEASE) is Beat.FENCED
    assert store.redis.xrange(store.keys.events(run_id)) == before
    store.commit(run_id, 2, [say("fresh")], seen=len(before))


def test_commit_retry_is_idempotent(store: RunStore) -> None:
    run_id = new_run(store)
    store.claim(run_id, "w1", LEASE)
    first = store.commit(run_id, 1, [say("a"), say("b")], seen=3, steps=2)
    assert store.commit(run_id, 1, [say("a"), say("b")], seen=3, steps=2) == first
    assert len(store.events(run_id)) == 5
    assert store.get(run_id).steps == 2


def test_crash_loop_and_reset(store: RunStore) -> None:
    run_id = new_run(store)
    outcomes = []
    for _ in range(3):
        epoch = store.claim(run_id, "w", LEASE)
        assert epoch is not None
        outcomes.append(store.requeue_dead(run_id, "oom", 2, epoch=epoch, lease_gone=False))
    assert outcomes == [Status.QUEUED, Status.QUEUED, Status.SUSPENDED]
    assert "crash loop" in store.get(run_id).reason
    store.resume(run_id)
    epoch = store.claim(run_id, "w", LEASE)
    assert epoch is not None
    store.requeue_dead(run_id, "oom", 2, epoch=epoch, lease_gone=False)
    epoch = store.claim(run_id, "w", LEASE)
    assert epoch is not None
    store.commit(run_id, epoch, [say("step")], seen=len(store.events(run_id)))
    assert store.get(run_id).dirty == 0


def test_cancel_running_then_heartbeat_says_cancel(store: RunStore) -> None:
    run_id = new_run(store)
    store.claim(run_id, "w1", LEASE)
    assert store.cancel(run_id) is Status.RUNNING
    assert store.get(run_id).cancel
    assert store.heartbeat(run_id, 1, LEASE) is Beat.CANCEL


def test_missing_runs(store: RunStore) -> None:
    unknown = new_run_id()
    with pytest.raises(NoSuchRun):
        store.get(unknown)
    for op in (store.cancel, store.resume, lambda i: store.send(i, "x")):
        with pytest.raises(NoSuchRun):
            op(unknown)
    assert store.get_many([unknown]) == []


def test_bad_entry_is_a_corrupt_event(store: RunStore) -> None:
    run_id = new_run(store)
    bad = store.redis.xadd(store.keys.events(run_id), {"type": "message", "data": "{"})
    with pytest.raises(CorruptEvent, match=f"run {run_id}: event {bad} is malformed"):
        store.events(run_id)


def test_scripts_read_their_keys_by_name() -> None:
    lua = resources.files("runner") / "lua"
    used: set[str] = set()
    for script in lua.iterdir():
        text = script.read_text()
        assert "KEYS[" not in text, f"{script.name} reads a key by position"
        used |= set(re.findall(r"\bK\.(\w+)", text))
    assert used <= set(SCRIPT_KEYS)
    header = key_names()
    for i, name in enumerate(SCRIPT_KEYS, 1):
        assert f"{name} = KEYS[{i}]" in header
    assert header.count("K.") == len(RUN_KEYS), "expire_run covers every key of the run"


def test_commit_moves_updated_ms_and_the_index(store: RunStore) -> None:
    run_id = new_run(store)
    store.claim(run_id, "w1", LEASE)
    for steps in (1, 0):  # a step, and a commit that is not one (usage only)
        store.redis.hset(store.keys.record(run_id), "updated_ms", 0)
        store.redis.zadd(store.keys.runs, {run_id: 0})
        store.commit(run_id, 1, [say("a")], seen=len(store.events(run_id)), steps=steps)
        record = store.get(run_id)
        assert record.updated_ms > 0
        assert store.redis.zscore(store.keys.runs, run_id) == record.updated_ms


def test_every_key_of_a_cancelled_run_expires(store: RunStore) -> None:
    run_id = new_run_id()
    store.create(run_id, {"queue": "q", "model": "m"}, [StatusEvent(status=Status.QUEUED)], "{}")
    store.send(run_id, "unread")
    store.cancel(run_id)
    # A queued run holds no lease; a run without a workspace has no manifest or blobs
    # (tests/integration/test_workspace_store.py checks that those expire too), one that
    # continues nothing no history (tests/unit/test_sessions_unit.py).
    absent = {
        store.keys.lease(run_id),
        store.keys.manifest(run_id),
        store.keys.blobs(run_id),
        store.keys.history(run_id),
    }
    for key in store.keys.run_keys(run_id):
        if key not in absent:
            assert 0 < store.redis.pttl(key) <= store.retention_ms, key


# -- sessions ------------------------------------------------------------------------------


def test_create_indexes_the_session_atomically_on_the_server_clock(store: RunStore) -> None:
    k = store.keys
    stale = new_run_id()
    store.redis.zadd(k.session("s1"), {stale: 1})  # a turn older than retention
    first = new_run_id()
    store.create(first, {"queue": "q", "model": "m"}, [], session="s1")
    created = store.get(first).created_ms
    assert store.get(first).session == "s1"
    assert store.redis.zscore(k.session("s1"), first) == created
    assert store.redis.zscore(k.sessions, "s1") == created
    assert store.redis.zscore(k.session("s1"), stale) is None, "old turns drop out"
    assert 0 < store.redis.pttl(k.session("s1")) <= store.retention_ms
    # A new turn refreshes the session's expiry.
    store.redis.pexpire(k.session("s1"), 1000)
    second = new_run_id()
    store.create(second, {"queue": "q", "model": "m"}, [], session="s1")
    assert store.redis.pttl(k.session("s1")) > 1000
    assert store.redis.zrange(k.session("s1"), 0, -1) == [first, second]
    # Without a session, nothing is indexed.
    store.create(new_run_id(), {"queue": "q", "model": "m"}, [])
    assert store.redis.zcard(k.sessions) == 1


def test_a_bad_session_name_leaves_no_keys(store: RunStore) -> None:
    with pytest.raises(BadInput, match="not a session name"):
        store.create(new_run_id(), {"queue": "q", "model": "m"}, [], session="../x")
    assert store.redis.keys("*") == []


# -- damage --------------------------------------------------------------------------------


@pytest.fixture
def fake() -> fakeredis.FakeServer:
    return fakeredis.FakeServer()


@pytest.fixture
def shared(fake: fakeredis.FakeServer) -> RunStore:
    return RunStore(fakeredis.FakeRedis(server=fake, decode_responses=True), Keys("runner"))


@pytest.fixture
def rq_conn(fake: fakeredis.FakeServer) -> redis.Redis:
    return fakeredis.FakeRedis(server=fake)


def sweep_settings() -> Settings:
    return Settings(redis_url="redis://unused:1/0", lease_seconds=2, _env_file=None)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("field", "value"),
    [("steps", "lots"), ("status", "exploded"), ("epoch", "")],
)
def test_a_record_that_does_not_validate_is_damaged(
    store: RunStore, field: str, value: str
) -> None:
    good, bad = new_run(store), new_run(store)
    store.redis.hset(store.keys.record(bad), field, value)
    with pytest.raises(Damaged) as info:
        store.get(bad)
    message = str(info.value)
    assert message.startswith(f"run {bad}: damaged record: {field} = {value!r}")
    assert len(message.splitlines()) == 1
    listed = {r.id: r for r in store.list_runs()}
    assert listed[good].damaged == ""
    assert listed[bad].damaged == message
    assert field in listed[bad].title
    # What parsed is kept; what did not is a placeholder.
    expected = Status.QUEUED if field != "status" else Status.FAILED
    assert listed[bad].status is expected
    assert [r.id for r in store.get_many([bad])] == [bad]


def test_a_record_missing_a_required_field_is_damaged(store: RunStore) -> None:
    run_id = new_run(store)
    store.redis.hdel(store.keys.record(run_id), "status", "queue")
    with pytest.raises(Damaged, match=f"run {run_id}: damaged record: status is missing"):
        store.get(run_id)
    (listed,) = store.list_runs()
    assert "queue is missing" in listed.damaged


def test_the_hash_cannot_claim_to_be_damaged(store: RunStore) -> None:
    run_id = new_run(store)
    store.redis.hset(store.keys.record(run_id), "damaged", "yes")
    assert store.get(run_id).damaged == ""


def test_readers_of_the_indexes_skip_malformed_entries(store: RunStore) -> None:
    run_id = new_run(store)
    store.claim(run_id, "w1", LEASE)
    k = store.keys
    store.redis.sadd(k.active, "../x", "r" + "z" * 18)
    store.redis.sadd(k.queued, "*")
    store.redis.zadd(k.runs, {"not a run": 1e15})
    assert store.active_ids() == [run_id]
    assert store.queued_ids() == []
    assert [r.id for r in store.list_runs()] == [run_id]
    assert [r.id for r in store.list_runs(Status.RUNNING)] == [run_id]
    assert store.get_many(["../x", run_id])[0].id == run_id


def test_sweep_removes_malformed_entries_and_goes_on(
    shared: RunStore, rq_conn: redis.Redis
) -> None:
    store = shared
    dead = new_run(store)
    store.claim(dead, "w1", LEASE)
    store.redis.delete(store.keys.lease(dead))
    k = store.keys
    store.redis.sadd(k.active, "../x", "r" + "z" * 18)
    store.redis.sadd(k.queued, "*")
    store.redis.zadd(k.runs, {"not a run": 1})
    report = sweeper.sweep(store, rq_conn, sweep_settings())
    assert report.dropped == 4
    assert report.requeued == [dead]
    assert queueing.in_queue(rq_conn, dead, "default")
    assert store.redis.smembers(k.active) == set()
    assert store.redis.smembers(k.queued) == {dead}
    assert store.redis.zrange(k.runs, 0, -1) == [dead]


def test_sweep_leaves_a_damaged_run_alone(shared: RunStore, rq_conn: redis.Redis) -> None:
    store = shared
    damaged, fine = new_run(store), new_run(store)
    for run_id in (damaged, fine):
        store.claim(run_id, "w1", LEASE)
        store.redis.delete(store.keys.lease(run_id))
    store.redis.hset(store.keys.record(damaged), "steps", "lots")
    report = sweeper.sweep(store, rq_conn, sweep_settings())
    assert report.requeued == [fine]
    assert store.redis.hget(store.keys.record(damaged), "status") == "running"


def test_sweep_tidies_the_id_of_a_run_whose_record_is_gone(
    shared: RunStore, rq_conn: redis.Redis
) -> None:
    store = shared
    run_id = new_run(store)
    store.claim(run_id, "w1", LEASE)
    store.redis.delete(store.keys.lease(run_id), store.keys.record(run_id))
    report = sweeper.sweep(store, rq_conn, sweep_settings())
    assert report.requeued == []
    assert store.active_ids() == []


def test_a_run_whose_stream_is_gone_is_damaged(store: RunStore) -> None:
    run_id = new_run(store)
    store.redis.delete(store.keys.events(run_id))
    for read in (
        lambda: store.events(run_id),
        lambda: store.events(run_id, after="0-1"),
        lambda: store.tail(run_id, 5),
        lambda: store.read(run_id, "0-0", 1),
    ):
        with pytest.raises(Damaged, match=f"run {run_id}: damaged: its event stream is gone"):
            read()
    # With the record gone too, the run has simply expired: nothing to read.
    store.redis.delete(store.keys.record(run_id))
    assert store.events(run_id) == []
    assert store.tail(run_id, 5) == []


def test_an_empty_read_of_a_live_stream_is_not_damage(store: RunStore) -> None:
    run_id = new_run(store)
    last = store.events(run_id)[-1].id
    assert store.events(run_id, after=last) == []
    assert store.read(run_id, last, 1) == []


# -- the client's follow loop --------------------------------------------------------------


def make_client(store: RunStore, reconnect_seconds: float = 5) -> Client:
    """A Client on the fake server, without connecting anywhere."""
    client = object.__new__(Client)
    client.settings = Settings(redis_url="redis://unused", reconnect_seconds=reconnect_seconds)
    client.redis = store.redis
    client.keys = store.keys
    client.store = store
    return client


def drive(events: Iterator[Any], on_each: Callable[[int], None] | None = None) -> list[Any]:
    out = []
    for event in events:
        out.append(event)
        if on_each is not None:
            on_each(len(out))
    return out


def test_follow_of_an_ended_run_replays_and_stops(store: RunStore) -> None:
    run_id = new_run(store)
    store.claim(run_id, "w1", LEASE)
    store.commit(run_id, 1, [say("done")], seen=3)
    store.finish(run_id, 1, Status.SUCCEEDED, "w1", "final answer")
    client = make_client(store)
    everything = drive(client.follow(run_id))
    assert everything == store.events(run_id)
    assert drive(client.follow(run_id, tail=2)) == everything[-2:]
    assert drive(client.follow(run_id, tail=0)) == []
    assert drive(client.follow(run_id, tail=100)) == everything


def test_follow_stops_at_parked_statuses(store: RunStore) -> None:
    run_id = new_run(store)
    for _ in range(2):
        epoch = store.claim(run_id, "w", LEASE)
        assert epoch is not None
        store.requeue_dead(run_id, "oom", 1, epoch=epoch, lease_gone=False)
    assert store.get(run_id).status is Status.SUSPENDED
    events = drive(make_client(store).follow(run_id))
    assert events[-1].status is Status.SUSPENDED


def test_follow_reconnects_without_gap_or_duplicate(
    store: RunStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reads that fail (as when Redis restarts) are retried from the last event yielded."""
    run_id = new_run(store)
    store.claim(run_id, "w1", LEASE)
    real_read = store.read
    afters: list[str] = []
    failures = iter([True, False, True, True, False, False, False])
    step = iter(range(100))

    def flaky_read(rid: str, after: str, block_ms: int) -> list[Any]:
        # Each read: the worker commits one more event; some reads then lose the reply.
        afters.append(after)
        n = next(step)
        seen = len(store.events(rid))
        if n < 3:
            store.commit(rid, 1, [say(f"s{n}")], seen=seen)
        elif n == 3:
            store.finish(rid, 1, Status.SUCCEEDED, "w1")
        if next(failures, False):
            raise redis.ConnectionError("server went away")
        return real_read(rid, after, 1)

    monkeypatch.setattr(store, "read", flaky_read)
    monkeypatch.setattr("tenacity.nap.time.sleep", lambda _: None)
    retries: list[BaseException] = []
    followed = drive(make_client(store).follow(run_id, on_retry=retries.append, block_ms=10))
    assert followed == store.events(run_id)
    assert len(retries) == 3
    ids = [e.id for e in followed]
    assert len(ids) == len(set(ids))
    # Every retry asked again from the last event it had yielded.
    assert afters[0] == afters[1]


def test_follow_gives_up_after_the_reconnect_window(
    store: RunStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = new_run(store)

    def down(*_: Any) -> list[Any]:
        raise redis.ConnectionError("refused")

    monkeypatch.setattr(store, "read", down)
    monkeypatch.setattr("tenacity.nap.time.sleep", lambda _: None)
    with pytest.raises(ServerUnavailable, match="lost the Redis connection"):
        drive(make_client(store, reconnect_seconds=0.05).follow(run_id))


def test_follow_sees_the_end_that_came_after_an_empty_read(
    store: RunStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read times out empty, then the run ends before the follower checks its status."""
    run_id = new_run(store)
    store.claim(run_id, "w1", LEASE)
    real_read = store.read
    calls = iter(range(100))

    def racing_read(rid: str, after: str, block_ms: int) -> list[Any]:
        if next(calls) == 0:
            # The block timed out empty; the last commit and the end land just after.
            store.commit(rid, 1, [say("last words")], seen=len(store.events(rid)))
            store.finish(rid, 1, Status.SUCCEEDED, "w1", "final answer")
            return []
        return real_read(rid, after, 1)

    monkeypatch.setattr(store, "read", racing_read)
    followed = drive(make_client(store).follow(run_id, block_ms=10))
    assert followed == store.events(run_id)
    assert followed[-1].status is Status.SUCCEEDED


# -- the CLI's error path ------------------------------------------------------------------


def _command(exc: BaseException) -> click.Command:
    @click.command()
    @cli_module.guarded
    def boom() -> None:
        raise exc

    return boom


@pytest.mark.parametrize(
    ("exc", "code", "text"),
    [
        (BadInput("nope"), 2, "error: nope"),
        (NoSuchRun("no such run: r1"), 2, "error: no such run: r1"),
        (ServerUnavailable("cannot reach Redis"), 1, "error: cannot reach Redis"),
        (CorruptEvent("run r: event 1-0 is malformed\nmore"), 1, "error: run r: event 1-0"),
        (redis.ConnectionError("reset by peer"), 1, "error: lost the Redis connection"),
        (redis.ResponseError("WRONGTYPE"), 1, "error: Redis error: WRONGTYPE"),
    ],
    ids=["bad-input", "no-such-run", "unavailable", "corrupt", "connection", "response"],
)
def test_guarded_prints_one_line_and_exits(exc: BaseException, code: int, text: str) -> None:
    result = CliRunner().invoke(_command(exc), [])
    assert result.exit_code == code
    assert result.stdout == ""
    assert result.stderr.startswith(text)
    assert len(result.stderr.strip().splitlines()) == 1


def test_guarded_keeps_the_command_name_and_help() -> None:
    assert cli_module.runs.status.name == "status"
    assert "Show a run's status" in (cli_module.runs.status.help or "")


def test_cli_rejects_a_bad_id_before_connecting(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_client(*_: Any) -> None:
        raise AssertionError("must not connect for a malformed id")

    monkeypatch.setattr("runner.cli.group.open_client", no_client)
    for command in ("status", "follow", "transcript", "cancel", "resume"):
        result = CliRunner().invoke(cli_module.cli, [command, "../x"])
        assert result.exit_code == 2, (command, result.output)
        assert result.stderr.strip() == (
            "error: not a run id: '../x' (expected r + 18 lowercase letters/digits)"
        )


def test_list_pages_through_the_index_for_a_filter(
    store: RunStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("runner.store.LIST_PAGE", 2)
    ids = [new_run(store) for _ in range(5)]
    oldest = ids[0]
    store.cancel(oldest)  # the only cancelled run sits at the far end of the index
    store.redis.zadd(store.keys.runs, {oldest: 1})
    assert [r.id for r in store.list_runs(Status.CANCELLED, limit=10)] == [oldest]
    assert len(store.list_runs(None, limit=3)) == 3
    assert {r.id for r in store.list_runs(Status.QUEUED, limit=10)} == set(ids[1:])
