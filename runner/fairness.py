"""Fairness between tenants: per-key slots and priority queues (issue 17).

``submit --key TENANT`` tags a run with a key; with ``RUNNER_KEY_CONCURRENCY=N`` at most N
turns of one key run at once across the fleet. A turn holds one of its key's slots,
fenced like its lease:

- taken by the worker that dequeued it, before it forks (:func:`admit`), tagged with the
  epoch the attempt will have; a key that is full does not block the worker: the run is
  *deferred* (moved from its RQ queue to the key's waiting list) and the worker goes on,
  having moved the key's other runs at the head of that queue there too, in one script
  (:func:`defer_backlog`): a burst of one key costs one dequeue, not one per run;
- kept alive by the lease heartbeat (:class:`SlotKeeper`), with the same TTL, on the
  server's clock; a stale attempt's beat or release changes nothing;
- released when the attempt ends with the run terminal or parked (:func:`after_attempt`);
  a handed-off or requeued turn keeps it, and one that lost it goes first in the queue;
- reclaimed by whoever looks next once its holder stops beating (SIGKILL, lost host):
  a crashed worker cannot leak it.

A freed slot wakes the key's next deferred run: it is pushed to the front of its queue
with the slot reserved for it, so a newer run of the key cannot take it first. Every
sweep also wakes keys whose slots expired without a release.

``--priority high|normal|low`` picks the RQ queue: ``Q:high``, ``Q`` or ``Q:low``;
workers listen on all three, in that order (:func:`listen_order`).
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Iterable, Sequence
from typing import Any, Literal

import redis

from runner import queueing, scripts
from runner.errors import BadInput
from runner.events import Status
from runner.keys import Keys, check_tenant, is_run_id
from runner.settings import Settings
from runner.store import RunStore

log = logging.getLogger("runner.fairness")
Priority = Literal["high", "normal", "low"]
PRIORITIES: tuple[Priority, ...] = ("high", "normal", "low")
RESERVED = "*"  # the epoch tag of a slot reserved for a woken run
SLOT_KEYS = ("slots", "waiting", "tenants", "deferred", "queue")  # slots.lua's KEYS, in order
MAX_WAKE_ROUNDS = 10  # wake passes when woken runs turn out to be cancelled meanwhile
BACKLOG_WINDOW = 500  # how far into its queue a full key's backlog is looked for at once

_SCRIPTS: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def priority_queue(queue: str, priority: str) -> str:
    """The RQ queue a run of ``priority`` goes to (``Q:high``, ``Q``, ``Q:low``)."""
    if priority not in PRIORITIES:
        raise BadInput(f"priority must be one of {', '.join(PRIORITIES)}, not {priority[:40]!r}")
    return queue if priority == "normal" else f"{queue}:{priority}"


def listen_order(queues: Sequence[str]) -> list[str]:
    """Every queue's high, normal and low queues, all highs first: how a worker listens."""
    return [priority_queue(q, p) for p in PRIORITIES for q in queues]


def _script(client: redis.Redis) -> Any:
    script = _SCRIPTS.get(client)
    if script is None:
        source = f"{scripts.keys_table('S', SLOT_KEYS)}\n{scripts.source('slots')}"
        script = _SCRIPTS[client] = client.register_script(source)
    return script


def _call(store: RunStore, tenant: str, op: str, *args: object, queue_key: str = "") -> Any:
    k: Keys = store.keys
    keys = [k.tenant_slots(tenant), k.tenant_waiting(tenant), k.tenants, k.deferred]
    if queue_key:  # the 'backlog' op's RQ queue
        keys.append(queue_key)
    return _script(store.redis)(keys=keys, args=[op, tenant, *args])


def _limits(settings: Settings) -> tuple[int, int]:
    return settings.key_concurrency, max(int(settings.lease_seconds * 1000), 1)


def tenant_of(store: RunStore, run_id: str) -> str:
    """The run's key ('' for none, or one that is not well formed)."""
    value = store.redis.hget(store.keys.record(run_id), "key") or ""
    try:
        return check_tenant(value) if value else ""
    except BadInput:
        return ""


class Admission:
    """What :func:`admit` decided about a dequeued run."""

    def __init__(self, run: bool, tenant: str = "", epoch: int = 0):
        self.run = run  # False: deferred, do not start it
        self.tenant = tenant  # the key whose slot is held ('' for none)
        self.epoch = epoch  # the tag of the held slot: the epoch the attempt will have


def admit(store: RunStore, run_id: str, settings: Settings) -> Admission:
    """Take a slot of the run's key for its next attempt, or defer the run.

    Runs without a key, and everything when RUNNER_KEY_CONCURRENCY is 0, run at once.
    A run that is not queued runs too: its attempt finds nothing to do, as without slots.
    """
    limit, lease_ms = _limits(settings)
    if limit <= 0 or not is_run_id(run_id):
        return Admission(True)
    status, epoch, tenant = store.redis.hmget(store.keys.record(run_id), "status", "epoch", "key")
    if not tenant or status != Status.QUEUED.value:
        return Admission(True)
    try:
        check_tenant(tenant)
    except BadInput:
        return Admission(True)
    nxt = int(epoch or 0) + 1
    took = _call(store, tenant, "take", limit, lease_ms, run_id, nxt, "1" if nxt > 1 else "0")
    return Admission(bool(took), tenant, nxt)


def defer(rq_conn: redis.Redis, run_id: str, queue: str) -> None:
    """Forget a deferred run's dequeue: it waits in its key's list, not in RQ."""
    from rq import Queue

    rq_conn.lrem(Queue(queue, connection=rq_conn).intermediate_queue_key, 0, run_id)


def defer_backlog(
    store: RunStore, rq_conn: redis.Redis, tenant: str, queue: str, settings: Settings
) -> int:
    """The key was found full: move its other runs at the head of ``queue`` (up to
    BACKLOG_WINDOW of the queue's first entries) to its waiting list in one script;
    returns how many moved.

    Without it a burst of one key is deferred one dequeue at a time, and a run of
    another key submitted behind the burst waits for all of those dequeues.
    """
    from rq import Queue

    limit, lease_ms = _limits(settings)
    queue_key = Queue(queue, connection=rq_conn).key
    head: list[bytes] = rq_conn.lrange(queue_key, 0, BACKLOG_WINDOW - 1)  # type: ignore[assignment]
    ids = [i.decode() for i in head if is_run_id(i.decode())]
    if not ids:
        return 0
    pipe = store.redis.pipeline(transaction=False)
    for run_id in ids:
        pipe.hmget(store.keys.record(run_id), "key", "status", "epoch")
    args: list[object] = []
    for run_id, (key, status, epoch) in zip(ids, pipe.execute(), strict=True):
        if key == tenant and status == Status.QUEUED.value:
            args += [run_id, "1" if int(epoch or 0) > 0 else "0"]
    if not args:
        return 0
    return int(_call(store, tenant, "backlog", limit, lease_ms, *args, queue_key=queue_key))


def after_attempt(
    store: RunStore, rq_conn: redis.Redis, run_id: str, held: Admission, settings: Settings
) -> list[str]:
    """Release the slot ``held`` unless the run goes on (queued, running); wake the next.

    Returns the ids of the runs woken.
    """
    if not held.tenant:
        return []
    status = store.redis.hget(store.keys.record(run_id), "status")
    if status in (Status.QUEUED.value, Status.RUNNING.value):
        return []  # handed off or requeued: the run keeps its slot for the next attempt
    limit, lease_ms = _limits(settings)
    woken = _call(store, held.tenant, "release", limit, lease_ms, run_id, held.epoch)
    return _push(store, rq_conn, held.tenant, list(woken), settings)


class SlotKeeper:
    """Renews the slot of one attempt with each lease beat (in the turn's process)."""

    def __init__(self, store: RunStore, run_id: str, epoch: int, settings: Settings):
        self.store, self.run_id, self.epoch, self.settings = store, run_id, epoch, settings
        self._tenant: str | None = None  # read on the first beat

    def __call__(self) -> None:
        limit, lease_ms = _limits(self.settings)
        if limit <= 0:
            return
        if self._tenant is None:
            self._tenant = tenant_of(self.store, self.run_id)
        if not self._tenant:
            return
        kept = _call(self.store, self._tenant, "beat", limit, lease_ms, self.run_id, self.epoch)
        if not kept:
            log.warning(
                "slot of key %s lost; the turn goes on",
                self._tenant,
                extra={"run": self.run_id, "epoch": self.epoch},
            )


def sweep(store: RunStore, rq_conn: redis.Redis, settings: Settings) -> list[str]:
    """Wake the deferred runs of every key with free slots (expired holders count as
    free); returns the ids woken."""
    if settings.key_concurrency <= 0:
        return []
    woken: list[str] = []
    for tenant in sorted(store.redis.smembers(store.keys.tenants)):
        try:
            check_tenant(tenant)
        except BadInput:
            store.redis.srem(store.keys.tenants, tenant)
            continue
        limit, lease_ms = _limits(settings)
        ids = list(_call(store, tenant, "wake", limit, lease_ms))
        woken += _push(store, rq_conn, tenant, ids, settings)
    return woken


def held_among(store: RunStore, run_ids: Sequence[str]) -> set[str]:
    """Which of these queued runs fairness accounts for: deferred in their key's list,
    or holding a live slot (woken, or dequeued and about to be claimed). The sweeper
    does not take them for lost; one whose slot expired unused is lost, and pushed
    again. Two round trips for the runs asked about, however many others wait."""
    k = store.keys
    ids = [i for i in run_ids if is_run_id(i)]
    pipe = store.redis.pipeline(transaction=False)
    for run_id in ids:
        pipe.hget(k.record(run_id), "key")
    keyed = [(i, t) for i, t in zip(ids, pipe.execute(), strict=True) if t and _well_formed(t)]
    if not keyed:
        return set()
    for run_id, tenant in keyed:
        pipe.lpos(k.tenant_waiting(tenant), run_id)
        pipe.hget(k.tenant_slots(tenant), run_id)
    pipe.time()
    *replies, (seconds, micros) = pipe.execute()
    now_ms = int(seconds) * 1000 + int(micros) // 1000
    held = set()
    for n, (run_id, _) in enumerate(keyed):
        waiting, slot = replies[2 * n], replies[2 * n + 1]
        if waiting is not None or (slot is not None and _expiry(slot) > now_ms):
            held.add(run_id)
    return held


def _expiry(value: str) -> int:
    _, _, expiry = value.partition(" ")
    return int(expiry) if expiry.isdigit() else 0


def _well_formed(tenant: str) -> bool:
    try:
        check_tenant(tenant)
    except BadInput:
        return False
    return True


def _push(
    store: RunStore, rq_conn: redis.Redis, tenant: str, ids: Iterable[str], settings: Settings
) -> list[str]:
    """Put woken runs at the front of their queues; free the reservation of any that
    is no longer queued (cancelled while deferred) and wake again for it."""
    woken: list[str] = []
    limit, lease_ms = _limits(settings)
    pending = [i for i in ids if is_run_id(i)]
    for _ in range(MAX_WAKE_ROUNDS):
        if not pending:
            break
        records = {r.id: r for r in store.get_many(pending)}
        again: list[str] = []
        for run_id in pending:
            record = records.get(run_id)
            if record is not None and record.status is Status.QUEUED and not record.damaged:
                queueing.push_front(rq_conn, run_id, record.queue, settings.retention_seconds)
                woken.append(run_id)
                log.info("deferred run woken", extra={"run": run_id, "key": tenant})
            else:
                again += _call(store, tenant, "release", limit, lease_ms, run_id, RESERVED)
        pending = [i for i in again if is_run_id(i)]
    return woken
