"""The RQ job that runs one attempt of a turn: claim, run under a lease, end the attempt.

The claim and the end of the attempt wait out a server that refuses writes (guarantee
10) here, in the process that runs the turn: the worker forks no new process for it.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import redis
from rq import get_current_job

from runner import logs, metrics, outage, parking, sessions, tracing
from runner.connection import connect
from runner.errors import BadInput, RunnerError, StaleEpoch
from runner.events import TERMINAL, Status
from runner.fairness import SlotKeeper
from runner.keys import Keys, check_run_id
from runner.script import parse_script
from runner.settings import Settings, get_settings
from runner.store import RunRecord, RunStore
from workers.agent import Outcome, Turn
from workers.lease import Lease
from workers.providers import load_model
from workers.stop import Stop

log = logging.getLogger("runner.turn")

# The stop request of the turn running in this process; the worker's signal handlers
# (in the work horse) call STOP.request().
STOP: Stop | None = None


def current_stop(settings: Settings) -> Stop:
    """This process's stop request, created on first use."""
    global STOP
    if STOP is None:
        STOP = Stop(settings.shutdown_grace)
    return STOP


def run_turn(run_id: str) -> str:
    """RQ entry point: run one attempt of ``run_id``; returns how the attempt ended."""
    settings = get_settings()
    run_id = check_run_id(run_id)
    worker = os.environ.get("RQ_WORKER_ID") or f"pid-{os.getpid()}"
    store = RunStore(connect(settings), Keys(settings.prefix), settings.retention_seconds)
    stop = current_stop(settings)
    fields: dict[str, object] = {"run": run_id, "worker": worker}
    job = get_current_job()
    logs.bind(run=run_id, worker=worker, queue=job.origin if job else None, epoch=None)
    metrics.bind(queue=job.origin if job else None)
    # Nothing is claimed yet, so a stop ends the wait at once.
    claiming = outage.retrying(
        settings.reconnect_seconds, log, fields, lambda: 0.0 if stop else None, stop.requested
    )
    attempt = tracing.start("attempt", run=run_id, worker=worker)
    trace = tracing.trace_id(attempt)  # shown in the running status event (issue 16)
    try:
        epoch = claiming(lambda: store.claim(run_id, worker, settings.lease_seconds, trace))
    except redis.RedisError as exc:
        tracing.end(attempt)
        if not outage.is_outage(exc):
            raise
        log.warning("claim gave up", extra={**fields, "error": outage.describe(exc)})
        return "outage"
    if epoch is None:
        tracing.end(attempt)
        log.info("nothing to run: the run is not queued", extra=fields)
        _turn_ended(store, settings, run_id)  # a cancel the claim applied
        return "skipped"
    fields["epoch"] = epoch
    logs.bind(epoch=epoch)
    log.info("attempt started", extra=fields)
    workspace = settings.workspace_root / run_id
    with tracing.entered(attempt) as span:
        if span is not None:
            span.set_attribute("epoch", epoch)
        slot = SlotKeeper(store, run_id, epoch, settings)
        with Lease(
            store, run_id, epoch, settings.lease_seconds, stop, settings.cancel_poll_seconds, slot
        ):
            record = claiming(lambda: store.get(run_id))
            metrics.bind(queue=record.queue, model=record.model)
            outcome = _attempt(store, record, epoch, stop, settings, workspace, worker)
        if outcome.status is Status.QUEUED and _carried(store, run_id):
            # Handed off with its files in the store: the next attempt restores them on
            # whichever host it lands, so this copy goes now, while this attempt still
            # owns the run and nobody else can be using it (issue 10, 8).
            shutil.rmtree(workspace, ignore_errors=True)
        ended = _end(store, run_id, epoch, outcome, worker, stop, settings, fields)
        if span is not None:
            span.set_attribute("status", str(ended))
    tracing.flush()
    if ended in TERMINAL:
        _turn_ended(store, settings, run_id)
        # The run is over: its directory on this host is of no more use (issue 10, 8).
        shutil.rmtree(workspace, ignore_errors=True)
    log.info("attempt ended", extra={**fields, "status": ended, "reason": outcome.reason})
    return outcome.reason if ended is not None else "fenced"


def _turn_ended(store: RunStore, settings: Settings, run_id: str) -> None:
    """Release the session turn held for this one (issue 14; the sweeper is the backstop)."""
    job = get_current_job()
    rq_conn = job.connection if job else connect(settings, decode=False, probe=False)
    sessions.ended_quietly(store, rq_conn, settings, run_id)


def _carried(store: RunStore, run_id: str) -> bool:
    """Whether the run's workspace is carried across hosts (under its cap, readable)."""
    try:
        return store.get(run_id).workspace == ""
    except (redis.RedisError, RunnerError):
        return False  # cannot tell: keep the only copy there may be


def _end(
    store: RunStore,
    run_id: str,
    epoch: int,
    outcome: Outcome,
    worker: str,
    stop: Stop,
    settings: Settings,
    fields: dict[str, object],
) -> Status | None:
    """Write how the attempt ended; the status written, or None if nothing was."""
    if outcome.status is None:
        return None
    status = outcome.status
    finishing = outage.retrying(
        settings.reconnect_seconds, log, fields, stop.time_left, stop.requested
    )

    def write() -> None:
        if outcome.park is not None:
            parking.park(store, run_id, epoch, worker, outcome.park)
            return
        try:
            store.finish(run_id, epoch, status, worker, outcome.reason, outcome.error)
        except redis.exceptions.OutOfMemoryError:
            store.finish(run_id, epoch, status, worker, outcome.reason, outcome.error, True)

    try:
        finishing(write)
    except StaleEpoch:
        metrics.fenced()
        log.warning("fenced before the attempt could end", extra=fields)
        return None
    except redis.RedisError as exc:
        if not outage.is_outage(exc):
            raise
        # The lease runs out with this process; a sweep requeues the run once it can.
        log.warning("attempt could not end", extra={**fields, "error": outage.describe(exc)})
        return None
    metrics.run_ended(str(status))
    if outcome.reason.startswith("handoff"):
        metrics.handoff()
    return status


def _attempt(
    store: RunStore,
    record: RunRecord,
    epoch: int,
    stop: Stop,
    settings: Settings,
    workspace: Path,
    worker: str,
) -> Outcome:
    try:
        script_text = store.script(record.id)
        script = parse_script(script_text) if script_text is not None else None
        model = load_model(record.model, script, settings)
    except BadInput as exc:
        return Outcome(Status.FAILED, "bad model", str(exc))
    workspace.mkdir(parents=True, exist_ok=True)
    turn = Turn(store, record.id, epoch, model, stop, settings, record.max_steps, workspace, worker)
    return turn.run()
