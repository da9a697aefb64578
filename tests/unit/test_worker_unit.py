"""The worker's hooks, the sweeper and the lease, called directly on fakeredis.

The e2e chaos suite sends real signals to real processes; here each hook is called by
hand (STYLE 7): the stop handler, how a dead horse is reconciled, the sweep, the lease
that notices it was fenced, and the server check a worker does on start.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from typing import Any

import fakeredis
import pytest
import redis
from rq.exceptions import StopRequested
from rq.queue import Queue
from rq.worker import Worker

from runner import queueing
from runner.errors import BadInput, UnsafeServer
from runner.events import MessageEvent, Status, StatusEvent
from runner.keys import Keys, new_run_id
from runner.serverinfo import Severity, check_server, problems
from runner.settings import Settings
from runner.store import RunStore
from workers import sweeper
from workers.lease import Lease
from workers.names import default_name, take_over_name
from workers.stop import Stop
from workers.worker import HANDOFF_SIGNAL, RunnerWorker, refuse_unsafe_server

# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture
def fake() -> fakeredis.FakeServer:
    return fakeredis.FakeServer()


@pytest.fixture
def rq_conn(fake: fakeredis.FakeServer) -> redis.Redis:
    return fakeredis.FakeRedis(server=fake)


@pytest.fixture
def store(fake: fakeredis.FakeServer) -> RunStore:
    return RunStore(fakeredis.FakeRedis(server=fake, decode_responses=True), Keys("runner"))


@pytest.fixture
def settings() -> Settings:
    return Settings(
        redis_url="redis://unused:1/0",
        lease_seconds=2,
        sweep_seconds=0.5,
        shutdown_grace=3,
        max_dirty_restarts=3,
        _env_file=None,  # type: ignore[call-arg]
    )


@pytest.fixture
def worker(rq_conn: redis.Redis, store: RunStore, settings: Settings) -> RunnerWorker:
    queue = Queue("default", connection=rq_conn)
    return RunnerWorker([queue], settings, store, connection=rq_conn, name="w1")


def new_run(store: RunStore, worker: str | None = None) -> str:
    """A queued run; claimed by ``worker`` (a running attempt, epoch 1) when given."""
    run_id = new_run_id()
    events = [StatusEvent(status=Status.QUEUED), MessageEvent(role="user", content="hi")]
    store.create(run_id, {"queue": "default", "model": "scripted"}, events)
    if worker is not None:
        assert store.claim(run_id, worker, 2) == 1
    return run_id


def last_status(store: RunStore, run_id: str) -> StatusEvent:
    return [e for e in store.events(run_id) if isinstance(e, StatusEvent)][-1]


# -- check_server --------------------------------------------------------------------------


class ConfigStub:
    """Answers CONFIG GET like a server with the given settings."""

    def __init__(self, **config: str) -> None:
        self.config = {k.replace("_", "-"): v for k, v in config.items()}

    def config_get(self, name: str) -> dict[str, str]:
        return {name: self.config[name]}


def test_check_server_is_quiet_for_a_safe_server() -> None:
    safe = ConfigStub(maxmemory_policy="noeviction", appendonly="yes", save="")
    assert problems(check_server(safe)) == []
    assert {f.severity for f in check_server(safe)} == {Severity.OK}
    rdb_only = ConfigStub(maxmemory_policy="noeviction", appendonly="no", save="3600 1")
    assert problems(check_server(rdb_only)) == []


@pytest.mark.parametrize("policy", ["allkeys-lru", "allkeys-lfu", "allkeys-random"])
def test_check_server_refuses_an_allkeys_policy(policy: str) -> None:
    stub = ConfigStub(maxmemory_policy=policy, appendonly="yes", save="")
    (finding,) = problems(check_server(stub))
    assert finding.severity is Severity.FATAL
    assert finding.message.startswith(f"maxmemory-policy is {policy}: ")
    assert "noeviction" in finding.message
    with pytest.raises(UnsafeServer, match="maxmemory-policy") as refused:
        refuse_unsafe_server(stub)  # type: ignore[arg-type]
    assert refused.value.exit_code == 2
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize("policy", ["volatile-lru", "volatile-ttl", "volatile-random"])
def test_check_server_warns_about_a_volatile_policy(
    policy: str, caplog: pytest.LogCaptureFixture
) -> None:
    stub = ConfigStub(maxmemory_policy=policy, appendonly="yes", save="")
    (finding,) = problems(check_server(stub))
    assert finding.severity is Severity.WARN
    assert finding.message.startswith(f"maxmemory-policy is {policy}: keys with a TTL")
    assert "retention" in finding.message  # what it risks: ended runs' keys
    with caplog.at_level(logging.WARNING):
        refuse_unsafe_server(stub)  # type: ignore[arg-type]
    assert f"maxmemory-policy is {policy}" in caplog.text


def test_check_server_warns_when_nothing_persists() -> None:
    stub = ConfigStub(maxmemory_policy="noeviction", appendonly="no", save="")
    (warning,) = problems(check_server(stub))
    assert warning.severity is Severity.WARN
    assert warning.message.startswith("persistence is off")


def test_check_server_when_config_is_refused(store: RunStore) -> None:
    # fakeredis, like a managed Redis that renames CONFIG, refuses CONFIG GET.
    (warning,) = check_server(store.redis)
    assert warning.severity is Severity.WARN
    assert "cannot read the server's configuration" in warning.message


# -- signals in the worker -----------------------------------------------------------------


def test_stop_signal_when_idle_stops_the_worker(worker: RunnerWorker) -> None:
    worker.request_stop(signal.SIGTERM, None)  # only sets state: it never raises
    assert worker._stop_requested
    assert worker._handoff_at is not None
    with pytest.raises(StopRequested):
        worker.dequeue_job_and_maintain_ttl(30)  # the dequeue loop stops before it blocks


def test_stop_signal_during_a_sweep_is_not_lost(
    worker: RunnerWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Issue 10.7: a signal that landed mid-sweep was ignored and the idle worker looped on.
    swept: list[str] = []

    def sweep(*args: Any) -> sweeper.SweepReport:
        swept.append("started")
        worker.request_stop(signal.SIGHUP, None)  # no StopRequested: the sweep goes on
        swept.append("finished")
        return sweeper.SweepReport()

    monkeypatch.setattr(sweeper, "sweep", sweep)
    began = time.monotonic()
    with pytest.raises(StopRequested):
        worker.dequeue_job_and_maintain_ttl(30)  # idle: RQ's loop would block 30 s, forever
    assert swept == ["started", "finished"]
    assert time.monotonic() - began < worker.settings.shutdown_grace


def test_stop_signal_while_the_server_is_down(
    worker: RunnerWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    # RQ's loop retries an unreachable server with back-off for ever, stop or no stop.
    tries: list[float] = []

    def down(*args: Any, **kwargs: Any) -> None:
        tries.append(time.monotonic())
        if len(tries) == 2:
            worker.request_stop(signal.SIGTERM, None)
        raise redis.ConnectionError("Connection refused")

    monkeypatch.setattr(worker, "heartbeat", down)
    began = time.monotonic()
    with pytest.raises(StopRequested):
        worker.dequeue_job_and_maintain_ttl(30)
    assert len(tries) == 2
    assert time.monotonic() - began < worker.settings.shutdown_grace


def test_stop_signal_while_reconciling_waits(
    worker: RunnerWorker, store: RunStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = new_run(store, worker="w1")
    requeue = store.requeue_dead

    def signalled_requeue(*args: Any, **kwargs: Any) -> Status | None:
        worker.request_stop(signal.SIGHUP, None)  # no StopRequested: it would cut a requeue
        return requeue(*args, **kwargs)

    monkeypatch.setattr(store, "requeue_dead", signalled_requeue)
    worker._reconcile(run_id, "default")
    assert worker._stop_requested
    assert store.get(run_id).status is Status.QUEUED
    assert queueing.in_queue(worker.connection, run_id, "default")


def test_stop_signal_is_forwarded_to_the_horse(
    worker: RunnerWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[tuple[int, int]] = []
    monkeypatch.setattr(os, "kill", lambda pid, sig: sent.append((pid, sig)))
    worker._horse_pid = 4242
    worker.request_stop(signal.SIGTERM, None)
    first = worker._handoff_at
    worker.request_stop(signal.SIGINT, None)  # a second signal hurries; the clock stays
    assert sent == [(4242, HANDOFF_SIGNAL), (4242, HANDOFF_SIGNAL)]
    assert worker._handoff_at == first


def test_stop_signal_after_the_horse_is_gone(
    worker: RunnerWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    def gone(pid: int, sig: int) -> None:
        raise ProcessLookupError

    monkeypatch.setattr(os, "kill", gone)
    worker._horse_pid = 4242
    worker.request_stop(signal.SIGTERM, None)  # no error
    # The stop is kept: the worker still hands off and exits once the horse is reaped.
    assert worker._stop_requested
    assert worker._handoff_at is not None


# -- registration under a name -------------------------------------------------------------


def dead_pid() -> int:
    """The PID of a process that has exited (and been reaped)."""
    child = os.fork()
    if child == 0:
        os._exit(0)
    os.waitpid(child, 0)
    return child


def registered(rq_conn: redis.Redis, name: str, host: str, pid: int) -> RunnerWorker:
    """A worker of ``name`` registered as if it ran on ``host`` as ``pid`` and was SIGKILLed."""
    settings = Settings(redis_url="redis://unused:1/0", _env_file=None)  # type: ignore[call-arg]
    store = RunStore(rq_conn, Keys("runner"))
    queues = [Queue("default", connection=rq_conn)]
    old = RunnerWorker(queues, settings, store, connection=rq_conn, name=name)
    old.register_birth()
    rq_conn.hset(old.key, mapping={"hostname": host, "pid": pid})
    return old


def test_a_dead_workers_name_is_taken_over(rq_conn: redis.Redis) -> None:
    old = registered(rq_conn, "w9", socket.gethostname(), dead_pid())
    assert queueing.workers_serving(rq_conn, "default") == 1
    take_over_name(rq_conn, old.key, "w9")
    assert rq_conn.hexists(old.key, "death")  # its death registered for it, as RQ would
    assert queueing.workers_serving(rq_conn, "default") == 0
    take_over_name(rq_conn, old.key, "w9")  # nothing left to do


def test_a_restart_under_the_same_pid_takes_over(rq_conn: redis.Redis) -> None:
    old = registered(rq_conn, "w9", socket.gethostname(), os.getpid())  # a container's PID 1
    take_over_name(rq_conn, old.key, "w9")
    assert rq_conn.hexists(old.key, "death")


@pytest.mark.parametrize(
    ("host", "pid"), [(socket.gethostname(), os.getppid()), ("elsewhere", 4242)]
)
def test_a_live_or_remote_worker_keeps_its_name(rq_conn: redis.Redis, host: str, pid: int) -> None:
    old = registered(rq_conn, "w9", host, pid)
    with pytest.raises(BadInput, match="a worker named w9 is registered already") as refused:
        take_over_name(rq_conn, old.key, "w9")
    assert refused.value.exit_code == 2
    assert not rq_conn.hexists(old.key, "death")


# -- monitoring ----------------------------------------------------------------------------


def test_late_handoff_kills_the_horse_once(
    worker: RunnerWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    killed: list[int] = []
    monkeypatch.setattr(Worker, "maintain_heartbeats", lambda *a: None)
    monkeypatch.setattr(worker, "kill_horse", lambda sig=signal.SIGKILL: killed.append(sig))
    worker._horse_pid = 4242
    worker._handoff_at = time.monotonic() - worker.settings.shutdown_grace - 1
    worker.maintain_heartbeats(None, None)  # type: ignore[arg-type]
    worker.maintain_heartbeats(None, None)  # type: ignore[arg-type]
    assert killed == [signal.SIGKILL]


def test_heartbeat_survives_a_lost_server(
    worker: RunnerWorker, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def down(*args: Any, **kwargs: Any) -> None:
        raise redis.ConnectionError("Connection refused")

    monkeypatch.setattr(Worker, "maintain_heartbeats", down)
    monkeypatch.setattr(worker.store.redis, "set", down)  # the sweep lock, too
    with caplog.at_level(logging.WARNING):
        worker.maintain_heartbeats(None, None)  # type: ignore[arg-type]
    assert "heartbeat skipped" in caplog.text
    assert "sweep skipped" in caplog.text


def test_reconcile_survives_a_lost_server(
    worker: RunnerWorker, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def down(*args: Any, **kwargs: Any) -> None:
        raise redis.ConnectionError("Connection refused")

    monkeypatch.setattr(Worker, "execute_job", lambda *a: None)
    monkeypatch.setattr(worker.store, "get", down)
    job = type("FakeJob", (), {"id": new_run_id()})()
    with caplog.at_level(logging.WARNING):
        worker.execute_job(job, Queue("default", connection=worker.connection))  # type: ignore[arg-type]
    assert "reconcile skipped" in caplog.text
    worker.request_stop(signal.SIGTERM, None)  # and it still stops when asked
    with pytest.raises(StopRequested):
        worker.dequeue_job_and_maintain_ttl(30)


# -- after the horse -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "why"),
    [
        (signal.SIGKILL, "signal SIGKILL"),
        (signal.SIGSEGV, "signal SIGSEGV"),
        (3 << 8, "exit status 3"),
    ],
)
def test_how_the_horse_died(worker: RunnerWorker, status: int, why: str) -> None:
    job = type("FakeJob", (), {"id": "x"})()
    worker.handle_work_horse_killed(job, 4242, status, None)  # type: ignore[arg-type]
    assert worker._horse_exit == why


def test_dead_horse_run_is_requeued_at_once(worker: RunnerWorker, store: RunStore) -> None:
    run_id = new_run(store, worker="w1")
    worker._horse_exit = "signal SIGKILL"
    worker._reconcile(run_id, "default")
    record = store.get(run_id)
    assert (record.status, record.dirty) == (Status.QUEUED, 1)
    assert record.reason == "turn process on w1 died (signal SIGKILL)"
    assert not store.redis.exists(store.keys.lease(run_id))  # no waiting for it to expire
    assert queueing.in_queue(worker.connection, run_id, "default")
    event = last_status(store, run_id)
    assert (event.status, event.worker, event.epoch) == (Status.QUEUED, "w1", 1)


def test_dead_horse_after_a_crash_loop_suspends(worker: RunnerWorker, store: RunStore) -> None:
    run_id = new_run(store, worker="w1")
    store.redis.hset(store.keys.record(run_id), "dirty", 3)
    worker._horse_exit = "signal SIGKILL"
    worker._reconcile(run_id, "default")
    record = store.get(run_id)
    assert record.status is Status.SUSPENDED
    assert record.reason.startswith("crash loop: 4 attempts in a row died")
    assert not queueing.in_queue(worker.connection, run_id, "default")


def test_reconcile_leaves_another_workers_run_alone(worker: RunnerWorker, store: RunStore) -> None:
    run_id = new_run(store, worker="w2")  # taken over while this worker's horse was frozen
    worker._reconcile(run_id, "default")
    assert store.get(run_id).status is Status.RUNNING
    assert len(store.events(run_id)) == 3


def test_reconcile_repushes_a_queued_run_in_no_queue(worker: RunnerWorker, store: RunStore) -> None:
    run_id = new_run(store)
    worker._reconcile(run_id, "default")
    assert queueing.in_queue(worker.connection, run_id, "default")
    worker._reconcile(run_id, "default")  # once is enough
    assert Queue("default", connection=worker.connection).job_ids == [run_id]


def test_reconcile_of_an_unknown_run(worker: RunnerWorker, store: RunStore) -> None:
    run_id = new_run_id()  # a plain RQ job whose id names no run
    worker._reconcile(run_id, "default")  # nothing to do, no error
    assert Queue("default", connection=worker.connection).job_ids == []
    assert store.redis.keys("*") == []  # no record, stream or index entry made up for it


# -- the sweep -----------------------------------------------------------------------------


def test_sweep_requeues_an_expired_lease_once(
    store: RunStore, rq_conn: redis.Redis, settings: Settings
) -> None:
    live = new_run(store, worker="w2")
    dead = new_run(store, worker="w3")
    store.redis.delete(store.keys.lease(dead))
    first = sweeper.sweep(store, rq_conn, settings)
    second = sweeper.sweep(store, rq_conn, settings)  # a racing sweeper finds nothing
    assert (first.requeued, second.requeued) == ([dead], [])
    assert store.get(live).status is Status.RUNNING
    record = store.get(dead)
    assert (record.status, record.dirty, record.reason) == (Status.QUEUED, 1, "lease expired")
    assert queueing.in_queue(rq_conn, dead, "default")
    assert last_status(store, dead).worker == "w3"


def test_sweep_suspends_a_crash_loop(
    store: RunStore, rq_conn: redis.Redis, settings: Settings
) -> None:
    run_id = new_run(store, worker="w2")
    store.redis.hset(store.keys.record(run_id), "dirty", 3)
    store.redis.delete(store.keys.lease(run_id))
    report = sweeper.sweep(store, rq_conn, settings)
    assert report.suspended == [run_id]
    assert store.get(run_id).status is Status.SUSPENDED
    assert not queueing.in_queue(rq_conn, run_id, "default")


def test_sweep_repushes_a_run_stranded_between_dequeue_and_claim(
    store: RunStore, rq_conn: redis.Redis, settings: Settings
) -> None:
    run_id = new_run(store)
    queue = Queue("default", connection=rq_conn)
    queueing.enqueue(rq_conn, run_id, "default", 3600, "t")
    # A worker popped the job (into RQ's intermediate list) and died before claiming.
    rq_conn.lmove(queue.key, queue.intermediate_queue_key)
    assert sweeper.sweep(store, rq_conn, settings).repushed == []  # a live worker might claim
    store.redis.hset(store.keys.record(run_id), "updated_ms", 0)  # queued long ago
    assert sweeper.sweep(store, rq_conn, settings).repushed == [run_id]
    assert queue.job_ids == [run_id]
    assert rq_conn.llen(queue.intermediate_queue_key) == 0  # or RQ fails the job later


def test_workers_share_one_sweep_at_a_time(
    worker: RunnerWorker, store: RunStore, rq_conn: redis.Redis, settings: Settings
) -> None:
    other = RunnerWorker(
        [Queue("default", connection=rq_conn)], settings, store, connection=rq_conn, name="w9"
    )
    run_id = new_run(store, worker="w2")
    store.redis.delete(store.keys.lease(run_id))
    other._maybe_sweep()  # takes the sweep lock and requeues
    assert store.get(run_id).status is Status.QUEUED
    assert store.redis.get(store.keys.sweep_lock) == "w9"
    assert store.claim(run_id, "w2", 2) == 2
    store.redis.delete(store.keys.lease(run_id))
    worker._maybe_sweep()  # the lock is still held: this worker skips its turn
    assert store.get(run_id).status is Status.RUNNING


# -- the lease -----------------------------------------------------------------------------


def test_lease_renews_while_the_attempt_owns_the_run(store: RunStore) -> None:
    run_id = new_run(store, worker="w1")
    stop = Stop(3)
    with Lease(store, run_id, 1, 0.3, stop):
        time.sleep(0.7)  # past the lease length: only renewals keep it
        assert store.redis.get(store.keys.lease(run_id)) == "1"
    assert not stop


def test_lease_stops_a_fenced_attempt(store: RunStore) -> None:
    run_id = new_run(store, worker="w1")
    stop = Stop(3)
    with Lease(store, run_id, 1, 0.3, stop):
        # Frozen past the lease: the run was requeued and another worker took it.
        store.redis.delete(store.keys.lease(run_id))
        assert store.requeue_dead(run_id, "lease expired", 3) is Status.QUEUED
        assert store.claim(run_id, "w2", 2) == 2
        assert stop.requested.wait(2)
    assert stop.reason == "fenced"
    assert store.redis.get(store.keys.lease(run_id)) == "2"  # the new owner's lease


def test_default_name_is_host_and_pid() -> None:
    assert default_name() == f"{socket.gethostname()}.{os.getpid()}"
