"""The RQ job that runs one attempt of a turn: claim, run under a lease, end the attempt."""

from __future__ import annotations

import logging
import os

from runner.connection import connect
from runner.errors import BadInput, StaleEpoch
from runner.events import Status
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
    epoch = store.claim(run_id, worker, settings.lease_seconds)
    if epoch is None:
        log.info("nothing to run: the run is not queued", extra={"run": run_id})
        return "skipped"
    stop = current_stop(settings)
    log.info("attempt started", extra={"run": run_id, "epoch": epoch, "worker": worker})
    with Lease(store, run_id, epoch, settings.lease_seconds, stop):
        outcome = _attempt(store, store.get(run_id), epoch, stop, settings)
    if outcome.status is not None:
        try:
            store.finish(run_id, epoch, outcome.status, worker, outcome.reason, outcome.error)
        except StaleEpoch:
            log.warning("fenced before the attempt could end", extra={"run": run_id})
            return "fenced"
    log.info("attempt ended: %s", outcome.reason, extra={"run": run_id, "epoch": epoch})
    return outcome.reason


def _attempt(
    store: RunStore, record: RunRecord, epoch: int, stop: Stop, settings: Settings
) -> Outcome:
    try:
        script_text = store.script(record.id)
        script = parse_script(script_text) if script_text is not None else None
        model = load_model(record.model, script, settings)
    except BadInput as exc:
        return Outcome(Status.FAILED, "bad model", str(exc))
    workspace = settings.workspace_root / record.id
    workspace.mkdir(parents=True, exist_ok=True)
    turn = Turn(store, record.id, epoch, model, stop, settings, record.max_steps, workspace)
    return turn.run()
