"""The worker's side of fairness (issue 17): the slot of the turn it runs now.

Taken after a dequeue and before the fork, given back after the work horse ends (unless
the run goes on); the rules are in runner/fairness.py.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import redis

from runner import fairness
from runner.outage import is_outage
from runner.settings import Settings
from runner.store import RunStore

log = logging.getLogger("runner.worker")


class SlotGate:
    """Admits dequeued runs to their key's slots, one turn at a time."""

    def __init__(
        self,
        store: RunStore,
        rq_conn: redis.Redis,
        settings: Settings,
        skipped: Callable[[str, redis.RedisError, str], None],
    ):
        self.store, self.rq_conn, self.settings = store, rq_conn, settings
        self.skipped = skipped  # how the worker logs a write it skipped in an outage
        self.held = fairness.Admission(True)

    def admit(self, run_id: str, queue: str, worker: str) -> bool:
        """Take the slot of the run's key; False if the run was deferred instead.

        A deferred run waits in its key's list, with the key's other runs from the head
        of the same queue, and the worker goes straight on to the next job: a full key
        never holds a worker, and a burst of it costs one dequeue, not one per run.
        """
        try:
            self.held = fairness.admit(self.store, run_id, self.settings)
        except redis.RedisError as exc:
            if not is_outage(exc):
                raise
            # Run it: its claim waits the outage out, and a slot cannot be taken now.
            self.skipped("fairness slot", exc, run_id)
            self.held = fairness.Admission(True)
        if not self.held.run:
            fairness.defer(self.rq_conn, run_id, queue)
            # The rest of the key's queued burst goes to its list now, in one script, so
            # another key's run behind the burst is the next dequeue, not the 200th.
            moved = fairness.defer_backlog(
                self.store, self.rq_conn, self.held.tenant, queue, self.settings
            )
            log.info(
                "deferred: its key is full",
                extra={"run": run_id, "worker": worker, "backlog": moved},
            )
        return self.held.run

    def after(self, run_id: str) -> None:
        """The horse has ended: release the slot unless the run goes on; wake the next."""
        held, self.held = self.held, fairness.Admission(True)
        fairness.after_attempt(self.store, self.rq_conn, run_id, held, self.settings)
