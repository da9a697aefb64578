"""Fairness slots on a real server (issue 17): take, defer, beat, release, wake, expiry.

The workers that drive these are in tests/e2e/test_fairness.py; here the store-level
rules are checked one by one, fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import redis
from rq import Queue

from runner import fairness
from runner.client import Client, Submission
from runner.errors import BadInput
from runner.events import Status
from runner.settings import Settings
from runner.store import RunStore

if TYPE_CHECKING:
    from tests.conftest import Server

SCRIPT = '{"steps": [{"content": "done"}]}'


def settings_for(server: Server, limit: int = 2, lease: float = 5.0) -> Settings:
    return Settings(redis_url=server.url, key_concurrency=limit, lease_seconds=lease)


def submit(client: Client, key: str = "acme", priority: str = "normal") -> str:
    sub = Submission(prompt="hi", model="scripted", script=SCRIPT, key=key, priority=priority)
    return client.submit(sub)


def holders(store: RunStore, tenant: str) -> dict[str, str]:
    raw: dict[str, str] = store.redis.hgetall(store.keys.tenant_slots(tenant))
    return raw


def waiting(store: RunStore, tenant: str) -> list[str]:
    ids: list[str] = store.redis.lrange(store.keys.tenant_waiting(tenant), 0, -1)
    return ids


def claim(store: RunStore, run_id: str) -> int:
    epoch = store.claim(run_id, "w", 5)
    assert epoch is not None
    return epoch


def test_take_defer_release_wakes_in_order(server: Server, store: RunStore) -> None:
    cfg = settings_for(server)
    client = Client(cfg)
    a, b, c, d = (submit(client) for _ in range(4))
    other = submit(client, key="other")
    got = [fairness.admit(store, i, cfg) for i in (a, b, c, d, other)]
    assert [g.run for g in got] == [True, True, False, False, True]
    assert sorted(holders(store, "acme")) == sorted([a, b])
    assert waiting(store, "acme") == [c, d]
    assert store.redis.sismember(store.keys.tenants, "acme")
    # a's attempt ends (succeeded): its slot goes to c, reserved, and c is back in RQ.
    epoch = claim(store, a)
    assert epoch == got[0].epoch
    store.finish(a, epoch, Status.SUCCEEDED)
    rq_conn = server.client(decode=False)
    woken = fairness.after_attempt(store, rq_conn, a, got[0], cfg)
    assert woken == [c]
    assert holders(store, "acme")[c].startswith("* ")
    assert waiting(store, "acme") == [d]
    assert Queue("default", connection=rq_conn).job_ids[0] == c
    # d cannot take c's reserved slot; c can, with its own epoch.
    assert not fairness.admit(store, d, cfg).run
    assert fairness.admit(store, c, cfg).run
    assert holders(store, "acme")[c].startswith("1 ")


def test_stale_epoch_neither_beats_nor_releases(server: Server, store: RunStore) -> None:
    cfg = settings_for(server, limit=1)
    client = Client(cfg)
    a = submit(client)
    held = fairness.admit(store, a, cfg)
    assert held.run and held.epoch == 1
    claim(store, a)
    fairness.SlotKeeper(store, a, 1, cfg)()
    # The attempt of epoch 1 is taken for dead and the run is claimed again as epoch 2.
    store.requeue_dead(a, "lease expired", 3, lease_gone=False)
    assert fairness.admit(store, a, cfg).epoch == 2
    claim(store, a)
    stale = fairness._call(store, "acme", "beat", 1, 5000, a, 1)
    assert stale == 0
    assert holders(store, "acme")[a].startswith("2 ")
    store.redis.hset(store.keys.record(a), "status", "succeeded")  # as if epoch 1 ended it
    fairness.after_attempt(store, server.client(decode=False), a, held, cfg)
    assert holders(store, "acme")[a].startswith("2 "), "a stale release freed the slot"


def test_handed_off_turn_keeps_its_slot_and_goes_first(server: Server, store: RunStore) -> None:
    cfg = settings_for(server, limit=1)
    client = Client(cfg)
    a, b = submit(client), submit(client)
    held = fairness.admit(store, a, cfg)
    epoch = claim(store, a)
    assert not fairness.admit(store, b, cfg).run
    store.finish(a, epoch, Status.QUEUED, reason="handoff")
    assert fairness.after_attempt(store, server.client(decode=False), a, held, cfg) == []
    assert fairness.admit(store, a, cfg).run, "the handed-off turn lost its slot"
    # Had it lost the slot (expired), it would wait in front of b, not behind.
    store.redis.delete(store.keys.tenant_slots("acme"))
    assert fairness.admit(store, b, cfg).run
    store.redis.lrem(store.keys.tenant_waiting("acme"), 0, b)
    store.redis.rpush(store.keys.tenant_waiting("acme"), "r0000000000deadbeef")
    assert not fairness.admit(store, a, cfg).run
    assert waiting(store, "acme")[0] == a


def test_expired_slot_is_reclaimed_by_the_sweep(server: Server, store: RunStore) -> None:
    cfg = settings_for(server, limit=1)
    client = Client(cfg)
    a, b = submit(client), submit(client)
    assert fairness.admit(store, a, cfg).run
    assert not fairness.admit(store, b, cfg).run
    assert b in fairness.held_among(store, [a, b])
    assert store.redis.smembers(store.keys.deferred) == {b}
    rq_conn = server.client(decode=False)
    assert fairness.sweep(store, rq_conn, cfg) == []  # a's slot is live
    # a's holder stops beating (its worker was SIGKILLed): its expiry passes.
    store.redis.hset(store.keys.tenant_slots("acme"), a, "1 1")
    assert fairness.sweep(store, rq_conn, cfg) == [b]
    assert list(holders(store, "acme")) == [b]
    assert not store.redis.smembers(store.keys.deferred)
    assert b in fairness.held_among(store, [b])  # woken, its slot reserved
    store.redis.hset(store.keys.tenant_slots("acme"), b, "* 1")
    assert b not in fairness.held_among(store, [b])  # the reservation expired unused: lost
    assert fairness.sweep(store, rq_conn, cfg) == []
    assert not store.redis.sismember(store.keys.tenants, "acme")


def test_a_cancelled_deferred_run_passes_its_slot_on(server: Server, store: RunStore) -> None:
    cfg = settings_for(server, limit=1)
    client = Client(cfg)
    a, b, c = submit(client), submit(client), submit(client)
    held = fairness.admit(store, a, cfg)
    assert not fairness.admit(store, b, cfg).run
    assert not fairness.admit(store, c, cfg).run
    client.cancel(b)
    epoch = claim(store, a)
    store.finish(a, epoch, Status.FAILED)
    assert fairness.after_attempt(store, server.client(decode=False), a, held, cfg) == [c]
    assert list(holders(store, "acme")) == [c]


def test_no_limit_means_no_slots(server: Server, store: RunStore) -> None:
    cfg = settings_for(server, limit=0)
    a = submit(Client(cfg))
    assert fairness.admit(store, a, cfg).run
    assert not store.redis.exists(store.keys.tenant_slots("acme"))


def test_priority_queues_and_bad_input(server: Server, store: RunStore) -> None:
    cfg = settings_for(server)
    client = Client(cfg)
    runs = {p: submit(client, priority=p) for p in ("low", "high", "normal")}
    assert {p: store.get(i).queue for p, i in runs.items()} == {
        "low": "default:low",
        "high": "default:high",
        "normal": "default",
    }
    assert fairness.listen_order(["a", "b"]) == ["a:high", "b:high", "a", "b", "a:low", "b:low"]
    with pytest.raises(BadInput, match="not a key"):
        submit(client, key="no spaces")
    with pytest.raises(BadInput, match="priority must be"):
        submit(client, priority="urgent")


def test_admit_rides_a_missing_record(server: Server, store: RunStore) -> None:
    cfg = settings_for(server)
    assert fairness.admit(store, "r0000000000deadbeef", cfg).run
    assert fairness.admit(store, "not-a-run", cfg).run
    with pytest.raises(redis.ResponseError, match="unknown op"):
        fairness._call(store, "acme", "nope", 1, 1000)


def test_a_full_key_defers_its_queued_backlog_in_one_script(
    server: Server, store: RunStore
) -> None:
    """The first full dequeue moves the key's other queued runs to its list, in queue
    order; another key's runs, a slot holder and a popped run stay where they are."""
    cfg = settings_for(server, limit=1)
    client = Client(cfg)
    rq_conn = server.client(decode=False)
    queue = Queue("default", connection=rq_conn)
    a = submit(client)
    assert fairness.admit(store, a, cfg).run
    rq_conn.lrem(queue.key, 0, a)  # as a worker's dequeue leaves it
    burst = [submit(client) for _ in range(6)]
    others = [submit(client, key="other") for _ in range(2)]
    burst.append(submit(client))
    # burst[0] is dequeued and found full; burst[1] holds a slot reserved for it.
    rq_conn.lrem(queue.key, 0, burst[0])
    store.redis.hset(store.keys.tenant_slots("acme"), burst[1], "* 99999999999999")
    assert not fairness.admit(store, burst[0], cfg).run
    assert fairness.defer_backlog(store, rq_conn, "acme", "default", cfg) == 5
    assert waiting(store, "acme") == [burst[0], *burst[2:]]
    assert queue.job_ids == [burst[1], *others]
    assert store.redis.smembers(store.keys.deferred) == {burst[0], *burst[2:]}
    # Nothing left to move; and a key with a free slot moves nothing.
    assert fairness.defer_backlog(store, rq_conn, "acme", "default", cfg) == 0
    late = submit(client, key="other")
    assert fairness.defer_backlog(store, rq_conn, "other", "default", cfg) == 0
    assert late in Queue("default", connection=rq_conn).job_ids


def test_a_woken_backlog_run_is_not_lost_to_the_sweeper(server: Server, store: RunStore) -> None:
    """Deferred runs are skipped by the lost-run check without their records being
    read; once woken they are in RQ's queue again, and after the backlog ends nothing
    is left in the deferred index."""
    from workers.sweeper import lost_candidates, sweep

    cfg = settings_for(server, limit=1)
    client = Client(cfg)
    rq_conn = server.client(decode=False)
    a, b, c = submit(client), submit(client), submit(client)
    held = fairness.admit(store, a, cfg)
    rq_conn.lrem(Queue("default", connection=rq_conn).key, 0, a)
    assert not fairness.admit(store, b, cfg).run
    fairness.defer(rq_conn, b, "default")
    rq_conn.lrem(Queue("default", connection=rq_conn).key, 0, b)
    assert fairness.defer_backlog(store, rq_conn, "acme", "default", cfg) == 1  # c
    assert lost_candidates(store, rq_conn) == [a]  # popped, about to be claimed
    report = sweep(store, rq_conn, cfg.model_copy(update={"lease_seconds": 3600.0}))
    assert report.repushed == []
    epoch = claim(store, a)
    store.finish(a, epoch, Status.SUCCEEDED)
    assert fairness.after_attempt(store, rq_conn, a, held, cfg) == [b]
    assert store.redis.smembers(store.keys.deferred) == {c}
    assert lost_candidates(store, rq_conn) == []


def test_the_sweep_finds_malformed_entries_server_side(server: Server, store: RunStore) -> None:
    """malformed.lua's pattern is keys.RUN_ID_PATTERN: near misses go, real ids stay."""
    from runner.keys import new_run_id
    from workers.sweeper import drop_malformed

    good = new_run_id()
    near = [
        "r" + "w" * 10 + "0" * 8,
        "r" + "0" * 10 + "g" * 8,
        good + "0",
        good[:-1],
        "R" + good[1:],
    ]
    store.redis.sadd(store.keys.queued, good, *near[:3])
    store.redis.sadd(store.keys.active, near[3])
    store.redis.zadd(store.keys.runs, {good: 1, near[4]: 1})
    assert drop_malformed(store) == 5
    assert store.redis.smembers(store.keys.queued) == {good}
    assert not store.redis.exists(store.keys.active)
    assert store.redis.zrange(store.keys.runs, 0, -1) == [good]
    assert drop_malformed(store) == 0
