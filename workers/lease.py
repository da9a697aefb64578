"""The lease heartbeat: a thread that keeps an attempt's lease alive while it runs.

It lives in the process that runs the turn (the work horse under RQ's fork), so a dead
turn stops renewing even if its parent worker lives on. The TTL is kept by the Redis
server, so no worker's clock matters.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import redis

from runner import outage
from runner.store import Beat, RunStore
from workers.stop import Stop

log = logging.getLogger("runner.lease")

# The heartbeat is also how a cancel reaches a running turn (and its tool): it beats at
# least this often (RUNNER_CANCEL_POLL_SECONDS), whatever the lease length, so
# ``runner cancel`` acts within seconds.
CANCEL_POLL_SECONDS = 1.0


class Lease:
    """Renews the lease (every third of it, at least every ``poll`` seconds); stops the
    turn when fenced or cancelled."""

    def __init__(
        self,
        store: RunStore,
        run_id: str,
        epoch: int,
        seconds: float,
        stop: Stop,
        poll: float = CANCEL_POLL_SECONDS,
        also: Callable[[], object] | None = None,
    ):
        self.store = store
        self.poll = poll
        self.run_id = run_id
        self.epoch = epoch
        self.seconds = seconds
        self.stop = stop
        self.also = also  # renewed with the lease: the run's fairness slot (issue 17)
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"lease-{run_id}", daemon=True)

    def __enter__(self) -> Lease:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join(timeout=self.seconds)

    def _loop(self) -> None:
        interval = min(self.seconds / 3, self.poll)
        while not self._done.wait(interval):
            try:
                beat = self.store.heartbeat(self.run_id, self.epoch, self.seconds)
                if beat is not Beat.FENCED and self.also is not None:
                    self.also()
            except redis.RedisError as exc:
                if not outage.is_outage(exc):
                    raise
                # Keep trying: the lease may still be alive on the server. If it expires
                # meanwhile, the next commit is rejected and the turn stops there.
                log.warning("lease renewal failed", extra={"run": self.run_id, "error": str(exc)})
                continue
            if beat is Beat.FENCED:
                log.warning(
                    "lease lost: another attempt owns the run; stopping this one",
                    extra={"run": self.run_id, "epoch": self.epoch},
                )
                self.stop.request("fenced")
                return
            if beat is Beat.CANCEL:
                self.stop.request("cancel")
