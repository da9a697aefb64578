"""The sweeper: finds runs whose attempt died and puts them back in their queue.

Every worker sweeps every ``RUNNER_SWEEP_SECONDS``; ``runner sweep`` does one by hand.
A running run whose lease has expired is requeued at the front with a new epoch to come
(or suspended after a crash loop). A queued run that no queue holds (its enqueue or
requeue was lost with a process) is pushed again. Every decision is one Lua script, so
racing sweepers requeue a run once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import redis

from runner import queueing
from runner.events import Status
from runner.settings import Settings
from runner.store import RunStore

log = logging.getLogger("runner.sweeper")


@dataclass
class SweepReport:
    """What one sweep did."""

    requeued: list[str] = field(default_factory=list)
    suspended: list[str] = field(default_factory=list)
    repushed: list[str] = field(default_factory=list)


def sweep(store: RunStore, rq_conn: redis.Redis, settings: Settings) -> SweepReport:
    """One pass over running and queued runs."""
    report = SweepReport()
    _expired_leases(store, rq_conn, settings, report)
    _lost_queued(store, rq_conn, settings, report)
    _prune_index(store, settings)
    return report


def _prune_index(store: RunStore, settings: Settings) -> None:
    """Drop index entries of runs idle past retention (an ended run's keys expire then)."""
    cutoff = _server_ms(store.redis) - settings.retention_seconds * 1000
    store.redis.zremrangebyscore(store.keys.runs, 0, cutoff)


def _expired_leases(
    store: RunStore, rq_conn: redis.Redis, settings: Settings, report: SweepReport
) -> None:
    active = store.active_ids()
    if not active:
        return
    pipe = store.redis.pipeline(transaction=False)
    for run_id in active:
        pipe.exists(store.keys.lease(run_id))
    for run_id, alive in zip(active, pipe.execute(), strict=True):
        if alive:
            continue
        status = store.requeue_dead(run_id, "lease expired", settings.max_dirty_restarts)
        if status is Status.QUEUED:
            record = store.get(run_id)
            queueing.push_front(rq_conn, run_id, record.queue, settings.retention_seconds)
            report.requeued.append(run_id)
            log.warning("lease expired; requeued", extra={"run": run_id, "worker": record.worker})
        elif status is Status.SUSPENDED:
            report.suspended.append(run_id)
            log.warning("crash loop; suspended", extra={"run": run_id})


def _lost_queued(
    store: RunStore, rq_conn: redis.Redis, settings: Settings, report: SweepReport
) -> None:
    queued = store.queued_ids()
    if not queued:
        return
    now_ms = _server_ms(store.redis)
    # A run popped by a worker is "not in its queue" for the instant before the claim;
    # waiting one lease length before re-pushing keeps that instant out of it.
    grace_ms = settings.lease_seconds * 1000
    waiting: dict[str, set[str]] = {}  # each queue read once a sweep, however long it is
    for record in store.get_many(queued):
        if record.status is not Status.QUEUED or now_ms - record.updated_ms < grace_ms:
            continue
        if record.queue not in waiting:
            waiting[record.queue] = queueing.queued_ids(rq_conn, record.queue)
        if record.id not in waiting[record.queue]:
            queueing.push_front(rq_conn, record.id, record.queue, settings.retention_seconds)
            report.repushed.append(record.id)
            log.warning("queued run was in no queue; pushed again", extra={"run": record.id})


def _server_ms(client: redis.Redis) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000
