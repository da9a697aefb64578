"""Reading runs: connections made on first use, and following a run's stream.

Guarantee 7 lives here: a follower replays the stream, then block-reads after the last
id it yielded, across reconnects and Redis restarts, so no event is missed or yielded
twice. :class:`runner.client.Client` builds on it.
"""

from __future__ import annotations

import gc
import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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

from runner.checks import MAX_SHOWN
from runner.connection import RETRYABLE, check_answers, connect, redis_url, server_errors
from runner.deltas import LiveReader
from runner.errors import BadInput, ServerUnavailable
from runner.events import (
    PARKED,
    TERMINAL,
    DeltaEvent,
    Event,
    StatusEvent,
)
from runner.keys import Keys, check_run_id
from runner.settings import Settings
from runner.store import RunRecord, RunStore

log = logging.getLogger("runner.client")
STREAM_ID = re.compile(r"^[0-9]{1,20}-[0-9]{1,20}$")

P = ParamSpec("P")
R = TypeVar("R")


def _boundary(fn: Callable[P, R]) -> Callable[P, R]:
    """Wrap a method so Redis and RQ errors leave it as RunnerErrors."""

    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with server_errors():
            return fn(*args, **kwargs)

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


@contextmanager
def _no_collection() -> Iterator[None]:
    """No cyclic garbage collection while the block runs (a replay's decode).

    A replay builds one model per event and keeps them all: every few hundred, Python's
    collector scans everything alive, each of those events and every module loaded, and
    on 10,000 events that was more time than the decode itself (issue 12). The events
    hold no cycles, so nothing is lost by collecting after the block instead.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class RunReader:
    """One server's runs, read: connections on first use, and following a run."""

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

    @_boundary
    def get(self, run_id: str) -> RunRecord:
        """The run's record (NoSuchRun if none)."""
        return self.store.get(check_run_id(run_id))

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
            with _no_collection():
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

    def read_live(
        self, reader: LiveReader, run_id: str, after: str, block_ms: int
    ) -> tuple[list[Event], list[DeltaEvent]]:
        """One blocking read of both streams: committed events after ``after``, fresh deltas."""
        check_run_id(run_id)
        with server_errors():
            committed, batch = self._read_live(reader, run_id, after, block_ms, None)
        return committed, batch[len(committed) :]

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
