"""The client API: submit, follow, inspect and steer runs.

It is the one interface the front ends use (the CLI now, an HTTP app later): it checks
every input itself, and every Redis or RQ error leaves it as a RunnerError (``raise ...
from exc``), so a front end only maps RunnerError to its own output. Build it with
:func:`open_client`; it connects on first use, so bad input fails before any network.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any, ParamSpec, TypeVar

from redis import Redis
from tenacity import (
    Retrying,
    before_sleep_log,
    retry_if_exception_type,
    stop_after_delay,
    wait_exponential,
)

from runner import queueing
from runner.checks import MAX_SHOWN, check_queue, check_session, check_text, decode_text
from runner.connection import RETRYABLE, check_answers, connect, redis_url, server_errors
from runner.deltas import LiveReader
from runner.errors import BadInput, ServerUnavailable, WrongState
from runner.events import (
    PARKED,
    TERMINAL,
    DeltaEvent,
    Event,
    MessageEvent,
    Status,
    StatusEvent,
)
from runner.keys import Keys, check_run_id, new_run_id
from runner.providers import check_model_spec
from runner.settings import Settings, load_settings
from runner.store import RunRecord, RunStore
from runner.workspace import access
from runner.workspace.access import UploadProgress
from runner.workspace.blobs import Blobs, open_blobs
from runner.workspace.manifest import Manifest
from runner.workspace.manifest import from_hash as manifest_from_hash
from runner.workspace.tree import Written

__all__ = [
    "Client",
    "Submission",
    "check_queue",
    "check_session",
    "check_text",
    "decode_text",
    "open_client",
]
log = logging.getLogger("runner.client")
STREAM_ID = re.compile(r"^[0-9]{1,20}-[0-9]{1,20}$")
TITLE_CHARS = 80
P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class Submission:
    """What ``submit`` takes. ``None`` means the configured default (RUNNER_*)."""

    prompt: str
    model: str | None = None
    queue: str | None = None
    max_steps: int | None = None
    script: str = ""
    session: str = ""
    workspace: str = ""  # a directory uploaded as the run's starting workspace


def open_client(settings: Settings | None = None) -> Client:
    """The client for ``settings`` (read from RUNNER_* and .env if not given).

    The one way front ends get a client: with RUNNER_API_URL set, one that goes through
    that ``runner serve`` (runner.http.remote) instead of Redis.
    """
    cfg = settings if settings is not None else load_settings()
    if cfg.api_url:
        try:
            from runner.http.remote import RemoteClient
        except ImportError as exc:
            raise BadInput(f"RUNNER_API_URL needs the serve extra ({exc.name} is missing)") from exc
        return RemoteClient(cfg)
    return Client(cfg)


def _boundary(fn: Callable[P, R]) -> Callable[P, R]:
    """Wrap a method so Redis and RQ errors leave it as RunnerErrors."""

    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with server_errors():
            return fn(*args, **kwargs)

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


class Client:
    """The operations on runs, over one server (connected on first use)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.keys = Keys(settings.prefix)

    # Connections: made on first use, so checking input never needs the server.

    @cached_property
    def url(self) -> str:
        return redis_url(self.settings)

    @cached_property
    def redis(self) -> Redis:
        check_answers(self.url)
        return connect(self.settings, url=self.url, probe=False)

    @cached_property
    def rq(self) -> Redis:
        self.redis  # noqa: B018 - the probe, once
        return connect(self.settings, url=self.url, decode=False, probe=False)

    @cached_property
    def store(self) -> RunStore:
        return RunStore(self.redis, self.keys, self.settings.retention_seconds)

    # -- submit -----------------------------------------------------------------------

    @_boundary
    def submit(self, sub: Submission, progress: UploadProgress | None = None) -> str:
        """Check a submission, create its run and enqueue it; returns the run id.

        With ``sub.workspace``, the directory is stored first (``progress`` is told as
        it goes) and becomes the run's starting workspace.
        """
        fields = self.check(sub)
        run_id = new_run_id()
        first: list[Event] = [StatusEvent(status=Status.QUEUED, reason="submitted")]
        if sub.workspace:
            cfg = self.settings
            blobs = self._blobs(run_id, ttl_ms=self.settings.retention_seconds * 1000)
            first.append(
                access.upload(
                    sub.workspace, blobs, cfg.workspace_max_bytes, cfg.workspace_ignore, progress
                )
            )
        first.append(MessageEvent(role="user", content=sub.prompt))
        self.store.create(run_id, fields, first, sub.script, session=sub.session)
        # If this enqueue is lost, the sweeper finds a queued run that no queue holds.
        queueing.enqueue(
            self.rq, run_id, fields["queue"], self.settings.retention_seconds, fields["title"]
        )
        return run_id

    def check(self, sub: Submission) -> dict[str, str]:
        """The record fields of a valid submission; BadInput naming what is wrong."""
        cfg = self.settings
        check_text(sub.prompt, "the prompt", cfg.max_prompt_bytes)
        model = cfg.model if sub.model is None else sub.model
        check_model_spec(model)
        queue = check_queue(cfg.queue if sub.queue is None else sub.queue)
        max_steps = cfg.max_steps if sub.max_steps is None else sub.max_steps
        if not 1 <= max_steps <= 100_000:
            raise BadInput(f"max steps must be 1 to 100000, not {max_steps}")
        if sub.script:
            self._check_script(sub.script)
        elif model == "scripted":
            raise BadInput("--model scripted needs --script FILE")
        if sub.session:
            check_session(sub.session)
        return {
            "queue": queue,
            "model": model,
            "max_steps": str(max_steps),
            "session": sub.session,
            "title": " ".join(sub.prompt.split())[:TITLE_CHARS],
        }

    def _check_script(self, script: str) -> None:
        from runner.script import parse_script

        limit = self.settings.max_script_bytes
        try:
            size = len(script.encode("utf-8"))
        except UnicodeEncodeError:
            raise BadInput("bad script: it is not valid UTF-8") from None
        if size > limit:
            raise BadInput(f"script is over {limit} bytes (RUNNER_MAX_SCRIPT_BYTES)")
        parse_script(script)

    # -- read -------------------------------------------------------------------------

    @_boundary
    def get(self, run_id: str) -> RunRecord:
        """The run's record (NoSuchRun if none)."""
        return self.store.get(check_run_id(run_id))

    @_boundary
    def runs(self, status: Status | None = None, limit: int = 50) -> list[RunRecord]:
        """Runs by last activity, newest first."""
        if not 1 <= limit <= 10_000:
            raise BadInput(f"limit must be 1 to 10000, not {limit}")
        return self.store.list_runs(status, limit)

    @_boundary
    def transcript(self, run_id: str) -> list[MessageEvent]:
        """The run's messages in order (``events.to_openai`` makes them OpenAI chat)."""
        self.get(run_id)  # NoSuchRun rather than an empty transcript
        return [e for e in self.store.events(run_id) if isinstance(e, MessageEvent)]

    @_boundary
    def workers_serving(self, queue: str) -> int:
        """How many workers listen on ``queue``."""
        return queueing.workers_serving(self.rq, check_queue(queue))

    # -- workspace --------------------------------------------------------------------

    def _blobs(self, run_id: str, ttl_ms: int = 0) -> Blobs:
        return open_blobs(self.settings.workspace_store, self.redis, self.keys, run_id, ttl_ms)

    @_boundary
    def workspace(self, run_id: str) -> Manifest:
        """The run's last committed workspace manifest (path -> entry)."""
        self.get(run_id)
        return manifest_from_hash(self.store.manifest(run_id))

    @_boundary
    def diff(self, run_id: str) -> str:
        """The run's workspace changes against its start, as a unified diff."""
        self.get(run_id)
        return access.diff(self.store.events(run_id), self._blobs(run_id))

    @_boundary
    def pull(self, run_id: str, dest: str, force: bool = False) -> Written:
        """Write the run's last committed workspace to ``dest`` (empty unless ``force``)."""
        return access.pull(self.workspace(run_id), dest, self._blobs(run_id), force)

    # -- steer ------------------------------------------------------------------------

    @_boundary
    def cancel(self, run_id: str) -> Status:
        """Cancel a run; returns the status it had (a running one stops at a safe point).

        BadInput if it has already ended.
        """
        record = self.get(run_id)
        before = self.store.cancel(run_id)
        if before is Status.QUEUED:
            queueing.remove(self.rq, run_id, record.queue)
        if before in TERMINAL:
            raise WrongState(f"run {run_id} has already ended ({before.value})")
        return before

    @_boundary
    def resume(self, run_id: str) -> Status:
        """Requeue a suspended or waiting run; returns the status it had (BadInput if other)."""
        record = self.get(run_id)
        before = self.store.resume(run_id)
        if before not in PARKED:
            raise WrongState(f"run {run_id} is {before.value}, not suspended or waiting")
        queueing.push_front(self.rq, run_id, record.queue, self.settings.retention_seconds)
        return before

    @_boundary
    def send(self, run_id: str, text: str) -> Status:
        """Queue a message for the run to take in before its next model call."""
        check_run_id(run_id)
        check_text(text, "the message", self.settings.max_prompt_bytes)
        self.get(run_id)
        status = self.store.send(run_id, text)
        if status in TERMINAL:
            raise WrongState(f"run {run_id} has ended ({status.value}); it takes no messages")
        return status

    @_boundary
    def sweep(self) -> dict[str, list[str]]:
        """Requeue runs whose worker died (expired lease), once, now."""
        from workers.sweeper import sweep

        report = sweep(self.store, self.rq, self.settings)
        return {
            "requeued": report.requeued,
            "suspended": report.suspended,
            "repushed": report.repushed,
        }

    # -- follow -----------------------------------------------------------------------

    def follow(
        self,
        run_id: str,
        tail: int | None = None,
        on_retry: Callable[[BaseException], None] | None = None,
        block_ms: int = 5000,
        after: str | None = None,
    ) -> Iterator[Event]:
        """Replay the run's events, then yield new ones until it ends or parks.

        ``after`` (a stream id, as an SSE Last-Event-ID) starts after that event instead.
        """
        for batch in self.follow_batches(run_id, tail, on_retry, block_ms, after):
            yield from batch

    def follow_batches(
        self,
        run_id: str,
        tail: int | None = None,
        on_retry: Callable[[BaseException], None] | None = None,
        block_ms: int = 5000,
        after: str | None = None,
    ) -> Iterator[list[Event]]:
        """Like :meth:`follow`, in the batches the server returns them (cheaper to print).

        A lost connection is retried with backoff and resumes after the last event
        yielded: nothing is missed and nothing is yielded twice.
        """
        yield from self._checked_follow(run_id, tail, on_retry, block_ms, after, live=False)

    def follow_live(
        self,
        run_id: str,
        tail: int | None = None,
        on_retry: Callable[[BaseException], None] | None = None,
        block_ms: int = 5000,
        after: str | None = None,
    ) -> Iterator[list[Event | DeltaEvent]]:
        """Like :meth:`follow_batches`, with the run's in-flight deltas merged in.

        Committed events keep the gapless guarantee; deltas are best effort (one read
        takes both streams), and those that precede a committed event already yielded
        are dropped. In a batch, committed events come first, then fresh deltas.
        """
        yield from self._checked_follow(run_id, tail, on_retry, block_ms, after, live=True)

    def _checked_follow(
        self,
        run_id: str,
        tail: int | None,
        on_retry: Callable[[BaseException], None] | None,
        block_ms: int,
        after: str | None,
        live: bool,
    ) -> Iterator[list[Any]]:
        check_run_id(run_id)
        if after is not None and tail is not None:
            raise BadInput("give a tail or a position to resume after, not both")
        if after is not None and not STREAM_ID.fullmatch(after):
            raise BadInput(f"not an event id: {after[:MAX_SHOWN]!r} (expected MS-SEQ)")
        with server_errors():
            yield from self._follow(run_id, tail, on_retry, block_ms, after, live)

    def _follow(
        self,
        run_id: str,
        tail: int | None,
        on_retry: Callable[[BaseException], None] | None,
        block_ms: int,
        after: str | None,
        live: bool = False,
    ) -> Iterator[list[Any]]:
        self.get(run_id)
        last = after or "0-0"
        if tail is not None:
            # --tail 0 shows nothing old: it starts after the newest event.
            newest = self.store.tail(run_id, max(tail, 1))
            last = newest[-1].id if newest else last
            batch: list[Any] = newest if tail else []
        else:
            batch = self.store.events(run_id, after=last)
        reader = LiveReader(self.redis, self.keys, run_id) if live else None
        committed: list[Event] = batch
        while True:
            if committed:
                last = committed[-1].id
            if batch:
                yield batch
            if (committed or not batch) and self._ended(run_id, committed):
                break
            if reader is None:
                batch = committed = self._read_retrying(run_id, last, block_ms, on_retry)
            else:
                committed, batch = self._read_live(reader, run_id, last, block_ms, on_retry)
        if not committed:
            # The run ended after the last read came back empty; its final events (the
            # end is written with its status event, atomically) are after ``last``.
            rest = self._retrying(lambda: self.store.events(run_id, after=last))
            if rest:
                yield rest

    def read_after(self, run_id: str, after: str, block_ms: int) -> list[Event]:
        """One blocking read of the events after ``after`` (retried like ``follow``'s)."""
        check_run_id(run_id)
        with server_errors():
            return self._read_retrying(run_id, after, block_ms, None)

    def _read_live(
        self,
        reader: LiveReader,
        run_id: str,
        last: str,
        block_ms: int,
        on_retry: Callable[[BaseException], None] | None,
    ) -> tuple[list[Event], list[Any]]:
        """Committed events after ``last`` and fresh deltas, as (committed, whole batch)."""
        committed, deltas = self._retrying(lambda: reader.read(last, block_ms), on_retry)
        if not committed and not deltas:
            # A quiet read: ask the way a plain read does, so a lost stream is reported.
            committed = self._retrying(lambda: self.store.events(run_id, after=last))
        return committed, [*committed, *deltas]

    def _ended(self, run_id: str, batch: list[Event]) -> bool:
        for event in reversed(batch):
            if isinstance(event, StatusEvent):
                return event.status in TERMINAL or event.status in PARKED
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
