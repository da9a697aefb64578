"""Retention and purge: an ended run's keys, blobs and RQ job go, on time or now.

Every key of a run (``runner.keys.RUN_KEYS``) gets the retention TTL when the run ends,
in the same script; the RQ job keeps its results as long. Blobs in a directory or
object store have no TTL: the sweeper deletes them once the run's record is gone
(:func:`forget_expired`). ``runner purge`` deletes at once, and only runs that have
ended: a live run (queued, running, waiting, suspended) is refused with the hint to
cancel it first, so a purge never races a worker that holds the run.
"""

from __future__ import annotations

import contextlib
import logging
import re
from dataclasses import dataclass, field
from typing import Any

from rq.exceptions import NoSuchJobError
from rq.executions import Execution
from rq.job import Job

from runner.errors import BadInput, NoSuchRun, WrongState
from runner.events import TERMINAL
from runner.keys import SESSION_PATTERN, check_run_id, is_run_id
from runner.settings import Settings
from runner.store import RunStore
from runner.workspace.blobs import open_blobs

log = logging.getLogger("runner.purge")
AGE = re.compile(r"^(\d{1,9})([smhdw]?)$")
UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
EXPIRED_PAGE = 500


@dataclass
class Purged:
    """What a purge deleted: runs, their Redis keys, and live runs it left alone."""

    runs: list[str] = field(default_factory=list)
    keys: int = 0
    kept: list[str] = field(default_factory=list)  # newest turns of live sessions


def parse_age(text: str) -> int:
    """Seconds in an age such as ``7d``, ``12h``, ``30m``, ``45s`` or ``90``."""
    found = AGE.fullmatch(text.strip())
    if not found:
        raise BadInput(f"not an age: {text[:40]!r} (expected a number and s, m, h, d or w: 7d)")
    return int(found.group(1)) * UNITS[found.group(2)]


def purge_run(store: RunStore, rq_conn: Any, settings: Settings, run_id: str) -> int:
    """Delete one ended run now; returns how many Redis keys went.

    NoSuchRun if nothing of it is left, WrongState if it has not ended.
    """
    check_run_id(run_id)
    keys = store.keys
    status, session = store.redis.hmget(keys.record(run_id), "status", "session")
    if status is None and not store.redis.exists(*keys.run_keys(run_id)):
        raise NoSuchRun(f"no such run: {run_id}")
    session = session if session and SESSION_PATTERN.fullmatch(session) else ""
    script_keys = keys.script_keys(run_id, session)
    before, deleted = store._call("purge", run_id, session, keys=script_keys)
    if int(deleted) < 0:
        raise WrongState(
            f"run {run_id} is {before}, not ended: cancel it first (runner cancel {run_id})"
        )
    deleted = int(deleted) + int(store.redis.delete(keys.deltas(run_id)))
    _delete_outside(store, rq_conn, settings, run_id)
    log.info("purged", extra={"run": run_id, "keys": deleted})
    return deleted


def _delete_outside(store: RunStore, rq_conn: Any, settings: Settings, run_id: str) -> None:
    """What of the run lives outside its own keys: file-store blobs and the RQ job."""
    if settings.workspace_store != "redis":
        open_blobs(settings, store.redis, store.keys, run_id).delete_run()
    with contextlib.suppress(NoSuchJobError):
        Job.fetch(run_id, connection=rq_conn).delete()
    # RQ keeps each finished execution's hash until its TTL; it names them itself.
    pattern = Execution(id="*", job_id=run_id, connection=rq_conn).key
    leftovers = list(rq_conn.scan_iter(match=pattern, count=1000))
    if leftovers:
        rq_conn.delete(*leftovers)


def purge_older(store: RunStore, rq_conn: Any, settings: Settings, age_seconds: int) -> Purged:
    """Delete every ended run last active over ``age_seconds`` ago.

    A session that has not expired keeps its newest turn (its next turn continues it).
    """
    if age_seconds < 0:
        raise BadInput("the age must not be negative")
    cutoff = _server_ms(store) - age_seconds * 1000
    ids = [str(i) for i in store.redis.zrangebyscore(store.keys.runs, 0, cutoff)]
    done = Purged()
    newest = _newest_turns(store, settings)
    for record in store.get_many(ids):
        if record.status not in TERMINAL:
            continue
        if record.id in newest:
            done.kept.append(record.id)
            continue
        try:
            done.keys += purge_run(store, rq_conn, settings, record.id)
        except (NoSuchRun, WrongState):
            continue  # gone or restarted since it was listed
        done.runs.append(record.id)
    return done


def _newest_turns(store: RunStore, settings: Settings) -> set[str]:
    """The newest turn of each session that has not expired."""
    since = _server_ms(store) - settings.session_idle_seconds * 1000
    names = store.redis.zrangebyscore(store.keys.sessions, since, "+inf")
    pipe = store.redis.pipeline(transaction=False)
    valid = [n for n in names if SESSION_PATTERN.fullmatch(n)]
    for name in valid:
        pipe.zrevrange(store.keys.session(name), 0, 0)
    return {str(ids[0]) for ids in pipe.execute() if ids}


def forget_expired(store: RunStore, settings: Settings, cutoff_ms: int) -> int:
    """Drop runs-index entries idle past ``cutoff_ms`` whose record has expired, with the
    run's file-store blobs (no TTL reaches those); returns how many.

    An entry whose record still exists (a parked run, a session's kept turn) stays, and
    is looked at again every sweep (all of them, page by page: a page limit would leave
    the expired ones behind the oldest live ones for ever).
    """
    gone: list[str] = []
    start = 0
    while True:
        page = store.redis.zrangebyscore(store.keys.runs, 0, cutoff_ms, start, EXPIRED_PAGE)
        ids = [i for i in page if is_run_id(i)]
        pipe = store.redis.pipeline(transaction=False)
        for run_id in ids:
            pipe.exists(store.keys.record(run_id))
        gone += [i for i, alive in zip(ids, pipe.execute(), strict=True) if not alive]
        if len(page) < EXPIRED_PAGE:
            break
        start += EXPIRED_PAGE
    for run_id in gone:
        if settings.workspace_store != "redis":
            try:
                open_blobs(settings, store.redis, store.keys, run_id).delete_run()
            except (OSError, BadInput) as exc:
                log.warning("expired blobs not deleted", extra={"run": run_id, "error": str(exc)})
                continue
        store.redis.zrem(store.keys.runs, run_id)
    return len(gone)


def _server_ms(store: RunStore) -> int:
    seconds, micros = store.redis.time()
    return int(seconds) * 1000 + int(micros) // 1000
