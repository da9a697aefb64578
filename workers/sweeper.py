"""The sweeper: finds runs whose attempt died and puts them back in their queue.

Every worker sweeps every ``RUNNER_SWEEP_SECONDS``; ``runner sweep`` does one by hand.
A running run whose lease has expired is requeued at the front with a new epoch to come
(or suspended after a crash loop). A queued run that no queue holds (its enqueue or
requeue was lost with a process) is pushed again. Every decision is one Lua script, so
racing sweepers requeue a run once.

Damage never stops a sweep: an index entry that is not a run id is removed (and logged),
and a run whose record does not validate is logged and left alone.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any

import redis
from rq import Queue

from runner import fairness, purge, queueing, scripts, sessions
from runner.events import Status
from runner.keys import RUN_ID_PATTERN, is_run_id
from runner.settings import Settings
from runner.store import RunStore, cut
from runner.workspace.retention import sweep_blob_store

log = logging.getLogger("runner.sweeper")
REPORTED_MAX = 1000
_reported: set[str] = set()  # damaged runs already logged by this process
_SCRIPTS: dict[str, Any] = {}  # malformed.lua and lost.lua, registered on first use


@dataclass
class SweepReport:
    """What one sweep did."""

    requeued: list[str] = field(default_factory=list)
    suspended: list[str] = field(default_factory=list)
    repushed: list[str] = field(default_factory=list)
    dropped: int = 0  # malformed index entries removed
    blobs_removed: int = 0  # expired runs' blob directories removed (file/fsspec stores)


def sweep(store: RunStore, rq_conn: redis.Redis, settings: Settings) -> SweepReport:
    """One pass over running and queued runs."""
    report = SweepReport()
    report.dropped = drop_malformed(store)
    _expired_leases(store, rq_conn, settings, report)
    _lost_queued(store, rq_conn, settings, report)
    report.repushed += fairness.sweep(store, rq_conn, settings)
    _prune_index(store, settings)
    report.blobs_removed = sweep_blob_store(store, settings)
    return report


def drop_malformed(store: RunStore) -> int:
    """Remove entries that are not run ids from the shared indexes; returns how many.

    A read-only script finds them (malformed.lua), so only the bad entries, normally
    none, come back to Python."""
    k = store.keys
    found = _script("malformed", _MALFORMED_NAMES, store.redis)(
        keys=[k.active, k.queued, k.runs], client=store.redis
    )
    members = dict(zip((k.active, k.queued, k.runs), found, strict=True))
    pipe = store.redis.pipeline(transaction=False)
    dropped = 0
    for key, entries in members.items():
        bad = [e for e in entries if not is_run_id(e)]
        if not bad:
            continue
        if key == k.runs:
            pipe.zrem(key, *bad)
        else:
            pipe.srem(key, *bad)
        dropped += len(bad)
        log.warning(
            "malformed index entries removed",
            extra={"index": key, "entries": [cut(e) for e in bad]},
        )
    if dropped:
        pipe.execute()
    return dropped


def _lua_id_pattern() -> str:
    """keys.RUN_ID_PATTERN as a Lua pattern (Lua has no {n} counts: the classes repeat)."""
    return re.sub(r"(\[[^\]]+\])\{(\d+)\}", lambda m: m[1] * int(m[2]), RUN_ID_PATTERN.pattern)


_MALFORMED_NAMES = (
    f"{scripts.keys_table('M', ('active', 'queued', 'runs'))}\nlocal ID = '{_lua_id_pattern()}'"
)
_LOST_NAMES = "local L = {queued = KEYS[1], deferred = KEYS[2], queues = {unpack(KEYS, 3)}}"


def _script(name: str, header: str, client: redis.Redis) -> Any:
    """A read-only sweep script of runner/lua, registered once per process (it is called
    with whichever client the sweep has)."""
    script = _SCRIPTS.get(name)
    if script is None:
        script = _SCRIPTS[name] = client.register_script(f"{header}\n{scripts.source(name)}")
    return script


def _prune_index(store: RunStore, settings: Settings) -> None:
    """Drop index entries idle past retention (an ended run's keys expire then; a
    session's set expires retention after its newest turn)."""
    cutoff = _server_ms(store.redis) - settings.retention_seconds * 1000
    purge.forget_expired(store, settings, cutoff)  # with file-store blobs (issue 14)
    # A session's last turn is kept while the session may be continued.
    keep = max(settings.retention_seconds, settings.session_idle_seconds) * 1000
    store.redis.zremrangebyscore(store.keys.sessions, 0, _server_ms(store.redis) - keep)


def _expired_leases(
    store: RunStore, rq_conn: redis.Redis, settings: Settings, report: SweepReport
) -> None:
    active = store.active_ids()
    if not active:
        return
    pipe = store.redis.pipeline(transaction=False)
    for run_id in active:
        pipe.exists(store.keys.lease(run_id))
    dead = [i for i, alive in zip(active, pipe.execute(), strict=True) if not alive]
    records = {r.id: r for r in store.get_many(dead)} if dead else {}
    for run_id in dead:
        record = records.get(run_id)  # None: the record is gone; the script tidies the id
        if record is not None and record.damaged:
            _damaged(record.damaged, run_id)
            continue
        status = store.requeue_dead(run_id, "lease expired", settings.max_dirty_restarts)
        if status is Status.QUEUED and record is not None:
            queueing.push_front(rq_conn, run_id, record.queue, settings.retention_seconds)
            report.requeued.append(run_id)
            log.warning("lease expired; requeued", extra={"run": run_id, "worker": record.worker})
        elif status is Status.SUSPENDED:
            report.suspended.append(run_id)
            log.warning("crash loop; suspended", extra={"run": run_id})


def _damaged(problem: str, run_id: str) -> None:
    """Log a damaged run once per process (every sweep would repeat it)."""
    if run_id not in _reported:
        if len(_reported) > REPORTED_MAX:
            _reported.clear()
        _reported.add(run_id)
        log.warning("damaged run left alone: %s", problem, extra={"run": run_id})


def _lost_queued(
    store: RunStore, rq_conn: redis.Redis, settings: Settings, report: SweepReport
) -> None:
    # Only the queued runs that neither wait in a key's list nor sit in an RQ queue are
    # read (one server-side script finds them), so a sweep costs the same however many
    # runs wait: normally a few just-popped runs and session turns.
    candidates = lost_candidates(store, rq_conn)
    if not candidates:
        return
    now_ms = _server_ms(store.redis)
    # A run popped by a worker is "not in its queue" for the instant before the claim;
    # waiting one lease length before re-pushing keeps that instant out of it.
    grace_ms = settings.lease_seconds * 1000
    held = fairness.held_among(store, candidates)  # deferred, or holding a slot
    held |= sessions.still_held(store, candidates)  # session turns waiting for the one before
    for record in store.get_many(candidates):
        if record.damaged:
            _damaged(record.damaged, record.id)
            continue
        if record.status is not Status.QUEUED or now_ms - record.updated_ms < grace_ms:
            continue
        if record.id in held:
            continue
        if not queueing.in_queue(rq_conn, record.id, record.queue):
            queueing.push_front(rq_conn, record.id, record.queue, settings.retention_seconds)
            report.repushed.append(record.id)
            log.warning("queued run was in no queue; pushed again", extra={"run": record.id})


def lost_candidates(store: RunStore, rq_conn: redis.Redis) -> list[str]:
    """Queued runs (by the index) that are in no key's waiting list and no RQ queue."""
    queues = sorted(q.decode() for q in rq_conn.smembers(Queue.redis_queues_keys))  # type: ignore[union-attr]
    keys = [store.keys.queued, store.keys.deferred, *queues]
    ids = _script("lost", _LOST_NAMES, store.redis)(keys=keys, client=store.redis)
    return [i for i in ids if is_run_id(i)]


def _server_ms(client: redis.Redis) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000
