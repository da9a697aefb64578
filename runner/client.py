"""The client API: submit, follow, inspect and steer runs. The CLI is a thin layer on it."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from tenacity import (
    Retrying,
    before_sleep_log,
    retry_if_exception_type,
    stop_after_delay,
    wait_exponential,
)

from runner import queueing
from runner.connection import RETRYABLE, connect, redis_url
from runner.errors import BadInput, ServerUnavailable
from runner.events import (
    TERMINAL,
    Event,
    MessageEvent,
    Status,
    StatusEvent,
    to_openai,
)
from runner.keys import Keys, check_run_id, check_session, new_run_id
from runner.providers import check_model_spec
from runner.settings import Settings
from runner.store import RunRecord, RunStore

log = logging.getLogger("runner.client")
TITLE_CHARS = 80


@dataclass(frozen=True)
class Submission:
    """What ``submit`` takes."""

    prompt: str
    model: str
    queue: str
    max_steps: int
    script: str = ""
    session: str = ""


class Client:
    """One connection to the server and the operations on runs."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        url = redis_url(settings)
        self.redis = connect(settings, url=url)
        self.rq = connect(settings, url=url, decode=False)
        self.keys = Keys(settings.prefix)
        self.store = RunStore(self.redis, self.keys, settings.retention_seconds)

    def submit(self, sub: Submission) -> str:
        """Create a run and enqueue it; returns its id."""
        self._check(sub)
        run_id = new_run_id()
        title = " ".join(sub.prompt.split())[:TITLE_CHARS]
        fields = {
            "queue": sub.queue,
            "model": sub.model,
            "max_steps": str(sub.max_steps),
            "session": sub.session,
            "title": title,
        }
        first: list[Event] = [
            StatusEvent(status=Status.QUEUED, reason="submitted"),
            MessageEvent(role="user", content=sub.prompt),
        ]
        self.store.create(run_id, fields, first, sub.script, session=sub.session)
        # If this enqueue is lost, the sweeper finds a queued run that no queue holds.
        queueing.enqueue(self.rq, run_id, sub.queue, self.settings.retention_seconds, title)
        return run_id

    def _check(self, sub: Submission) -> None:
        if not sub.prompt.strip():
            raise BadInput("the prompt is empty")
        size = len(sub.prompt.encode())
        if size > self.settings.max_prompt_bytes:
            raise BadInput(
                f"the prompt is {size} bytes; the limit is {self.settings.max_prompt_bytes} "
                "(RUNNER_MAX_PROMPT_BYTES)"
            )
        check_model_spec(sub.model)
        if sub.model == "scripted" and not sub.script:
            raise BadInput("--model scripted needs --script FILE")
        # Checked before the run is created: a bad name must leave no keys behind.
        if sub.session:
            check_session(sub.session)

    def get(self, run_id: str) -> RunRecord:
        """The run's record (NoSuchRun if none)."""
        return self.store.get(check_run_id(run_id))

    def runs(self, status: Status | None = None, limit: int = 50) -> list[RunRecord]:
        """Runs by last activity."""
        return self.store.list_runs(status, limit)

    def transcript(self, run_id: str) -> list[dict[str, Any]]:
        """The run's messages, OpenAI-shaped."""
        self.get(run_id)
        return [to_openai(e) for e in self.store.events(run_id) if isinstance(e, MessageEvent)]

    def cancel(self, run_id: str) -> Status:
        """Cancel a run; returns the status it had."""
        record = self.get(run_id)
        before = self.store.cancel(run_id)
        if before is Status.QUEUED:
            queueing.remove(self.rq, run_id, record.queue)
        return before

    def resume(self, run_id: str) -> Status:
        """Requeue a suspended or waiting run; returns the status it had."""
        record = self.get(run_id)
        before = self.store.resume(run_id)
        if before in (Status.SUSPENDED, Status.WAITING):
            queueing.push_front(self.rq, run_id, record.queue, self.settings.retention_seconds)
        return before

    def send(self, run_id: str, text: str) -> Status:
        """Queue a message for the run to take in before its next model call."""
        self.get(run_id)
        if not text.strip():
            raise BadInput("the message is empty")
        status = self.store.send(run_id, text)
        if status in TERMINAL:
            raise BadInput(f"run {run_id} has ended ({status.value}); it takes no messages")
        return status

    def workers_serving(self, queue: str) -> int:
        """How many workers listen on ``queue``."""
        return queueing.workers_serving(self.rq, queue)

    def follow(
        self,
        run_id: str,
        tail: int | None = None,
        on_retry: Callable[[BaseException], None] | None = None,
        block_ms: int = 5000,
    ) -> Iterator[Event]:
        """Replay the run's events, then yield new ones until it ends or parks."""
        for batch in self.follow_batches(run_id, tail, on_retry, block_ms):
            yield from batch

    def follow_batches(
        self,
        run_id: str,
        tail: int | None = None,
        on_retry: Callable[[BaseException], None] | None = None,
        block_ms: int = 5000,
    ) -> Iterator[list[Event]]:
        """Like :meth:`follow`, in the batches the server returns them (cheaper to print).

        A lost connection is retried with backoff and resumes after the last event
        yielded: nothing is missed and nothing is yielded twice.
        """
        self.get(run_id)
        last = "0-0"
        if tail is None:
            batch = self.store.events(run_id)
        else:
            # --tail 0 shows nothing old: it starts after the newest event.
            newest = self.store.tail(run_id, max(tail, 1))
            last = newest[-1].id if newest else last
            batch = newest if tail else []
        while True:
            if batch:
                last = batch[-1].id
                yield batch
            if self._ended(run_id, batch):
                break
            batch = self._read_retrying(run_id, last, block_ms, on_retry)
        if not batch:
            # The run ended after the last read came back empty; its final events (the
            # end is written with its status event, atomically) are after ``last``.
            rest = self._retrying(lambda: self.store.events(run_id, after=last))
            if rest:
                yield rest

    def _ended(self, run_id: str, batch: list[Event]) -> bool:
        for event in reversed(batch):
            if isinstance(event, StatusEvent):
                return event.status in TERMINAL or event.status in (
                    Status.SUSPENDED,
                    Status.WAITING,
                )
        if not batch:
            # Nothing new: the run may have ended before we attached (tail, or a race).
            return self._retrying(lambda: self.store.get(run_id)).status in TERMINAL
        return False

    def _read_retrying(
        self,
        run_id: str,
        last: str,
        block_ms: int,
        on_retry: Callable[[BaseException], None] | None,
    ) -> list[Event]:
        events: list[Event] = self._retrying(
            lambda: self.store.read(run_id, last, block_ms), on_retry
        )
        return events

    def _retrying(
        self, fn: Callable[[], Any], on_retry: Callable[[BaseException], None] | None = None
    ) -> Any:
        def before_sleep(state: Any) -> None:
            if on_retry is not None and state.outcome is not None:
                exc = state.outcome.exception()
                if exc is not None:
                    on_retry(exc)
            before_sleep_log(log, logging.DEBUG)(state)

        retrying = Retrying(
            retry=retry_if_exception_type(RETRYABLE),
            wait=wait_exponential(multiplier=0.2, max=5),
            stop=stop_after_delay(self.settings.reconnect_seconds),
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            return retrying(fn)
        except RETRYABLE as exc:
            raise ServerUnavailable(f"lost the Redis connection for good: {exc}") from exc
