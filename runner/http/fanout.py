"""Fan-out: one reader per followed run, broadcasting to every SSE subscriber.

A hundred followers of one run cost one blocked XREAD, not a hundred: the first
subscriber starts a feed (a thread that blocks on the run's stream through the client),
later ones join it, and the last one to leave stops it (within one read's block).

No gap and no duplicate: every batch a feed publishes carries ``prev``, the position it
read after. A subscriber keeps the id of the last event it delivered; when a batch's
``prev`` is past it (it joined late, or replayed from an older ``Last-Event-ID``), it
fills the gap with one range read first, and it drops what it has already delivered.

Deltas (the run's in-flight text, issue 12) ride along best effort: the feed reads both
streams with one XREAD (:class:`runner.deltas.LiveReader`), keeps those since the newest
commit so a late subscriber starts with the text so far, and a subscriber passes on only
deltas not older than the last committed event it delivered.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from starlette.concurrency import run_in_threadpool

from runner.client import Client
from runner.deltas import LiveReader, stream_order
from runner.errors import RunnerError
from runner.events import PARKED, TERMINAL, DeltaEvent, Event, StatusEvent

log = logging.getLogger("runner.http.fanout")
BLOCK_MS = 2000  # how long a feed's read blocks: also how late an unwatched feed stops
QUEUE_LIMIT = 1000  # batches a slow subscriber may lag before it is dropped (it reconnects)
PAGE = 500


def position(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


@dataclass(frozen=True)
class Batch:
    """Events a feed read after ``prev``, and the fresh deltas read with them."""

    prev: str
    events: list[Event]
    deltas: list[DeltaEvent] = field(default_factory=list)


@dataclass(frozen=True)
class End:
    """The feed stopped: the run ended or parked (``error`` empty), or reading failed."""

    error: str = ""


Item = Batch | End


@dataclass
class Feed:
    run_id: str
    subscribers: set[asyncio.Queue[Item]] = field(default_factory=set)
    stopped: bool = False
    deltas: list[DeltaEvent] = field(default_factory=list)  # since the newest commit


class Hub:
    """The feeds of one app, keyed by run id; used from the event loop only."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.feeds: dict[str, Feed] = {}
        self.reads = 0  # blocking reads done by all feeds (the fan-out measure)

    def join(self, run_id: str) -> tuple[Feed, asyncio.Queue[Item]]:
        feed = self.feeds.get(run_id)
        if feed is None or feed.stopped:
            feed = self.feeds[run_id] = Feed(run_id)
            loop = asyncio.get_running_loop()
            threading.Thread(
                target=self._read, args=(feed, loop), name=f"feed-{run_id}", daemon=True
            ).start()
        queue: asyncio.Queue[Item] = asyncio.Queue()
        feed.subscribers.add(queue)
        return feed, queue

    def leave(self, feed: Feed, queue: asyncio.Queue[Item]) -> None:
        feed.subscribers.discard(queue)
        if not feed.subscribers:
            self._stop(feed)

    def _stop(self, feed: Feed) -> None:
        feed.stopped = True
        if self.feeds.get(feed.run_id) is feed:
            del self.feeds[feed.run_id]

    def _publish(self, feed: Feed, item: Item) -> None:
        if isinstance(item, Batch):
            if item.events:
                floor = position(item.events[-1].id)
                feed.deltas = [d for d in feed.deltas if stream_order(d.after) >= floor]
            feed.deltas += item.deltas
        for queue in list(feed.subscribers):
            if queue.qsize() >= QUEUE_LIMIT:
                feed.subscribers.discard(queue)
                queue.put_nowait(End("too far behind; reconnect with Last-Event-ID"))
            else:
                queue.put_nowait(item)
        if isinstance(item, End):
            self._stop(feed)

    def _read(self, feed: Feed, loop: asyncio.AbstractEventLoop) -> None:
        """The feed's thread: read the stream until the run ends or nobody listens."""
        run_id = feed.run_id
        try:
            newest = self.client.store.tail(run_id, 1)
            prev = newest[-1].id if newest else "0-0"
            reader = LiveReader(self.client.redis, self.client.keys, run_id)
            while not feed.stopped:
                self.reads += 1
                events, deltas = self.client.read_live(reader, run_id, prev, BLOCK_MS)
                if events or deltas:
                    batch = Batch(prev, events, deltas)
                    loop.call_soon_threadsafe(self._publish, feed, batch)
                if events:
                    prev = events[-1].id
                elif self.client.get(run_id).status in TERMINAL | PARKED:
                    loop.call_soon_threadsafe(self._publish, feed, End())
                    return
        except RunnerError as exc:
            log.warning("feed_failed", extra={"run": run_id, "error": str(exc)})
            loop.call_soon_threadsafe(self._publish, feed, End(str(exc).splitlines()[0]))
        except RuntimeError:
            pass  # the loop closed under us: the app is shutting down


def ends(event: Event, ended: bool) -> bool:
    """Whether the follow is over after ``event`` (a later status can reopen it)."""
    if isinstance(event, StatusEvent):
        return event.status in TERMINAL or event.status in PARKED
    return ended


class Subscription:
    """One follower: its replay from ``after``, then the feed's live batches, deduplicated."""

    def __init__(self, hub: Hub, run_id: str, after: str) -> None:
        self.hub = hub
        self.run_id = run_id
        self.last = after
        self.last_delta = (0, 0)  # the newest delta delivered: none twice
        self.ended = False
        self.error = ""

    async def _range(self) -> list[Event]:
        """Every event after ``last`` now (paged)."""
        out: list[Event] = []
        after = self.last
        while True:
            page = await run_in_threadpool(self.hub.client.store.events, self.run_id, after, PAGE)
            out.extend(page)
            if len(page) < PAGE:
                return out
            after = page[-1].id

    def _fresh(self, events: list[Event]) -> list[Event]:
        seen = position(self.last)
        fresh = [e for e in events if position(e.id) > seen]
        for event in fresh:
            self.ended = ends(event, self.ended)
        if fresh:
            self.last = fresh[-1].id
        return fresh

    def _current(self, deltas: list[DeltaEvent]) -> list[DeltaEvent]:
        """The deltas that follow the last committed event delivered.

        Older ones are superseded by it; newer ones would come before their event. A delta
        already sent is not sent again: the replay's text in flight can also be in the
        first batch queued for this subscriber.
        """
        here = position(self.last)
        current = [
            d
            for d in deltas
            if stream_order(d.after) == here and stream_order(d.id) > self.last_delta
        ]
        if current:
            self.last_delta = stream_order(current[-1].id)
        return current

    async def events(self) -> AsyncIterator[list[Event | DeltaEvent]]:
        """Batches of events, each new, in stream order, until the run ends or parks.

        Committed events come gapless and once each; deltas between them, best effort.
        """
        feed, queue = self.hub.join(self.run_id)
        try:
            # Joined first, replayed second: whatever the feed reads from now on is queued.
            replay: list[Event | DeltaEvent] = [*self._fresh(await self._range())]
            replay += self._current(feed.deltas)  # the text in flight so far
            if replay:
                yield replay
            while not self.ended:
                item = await queue.get()
                if isinstance(item, End):
                    self.error = item.error
                    rest: list[Event | DeltaEvent] = []
                    if not item.error:
                        rest += self._fresh(await self._range())
                    if rest:
                        yield rest
                    return
                if position(item.prev) > position(self.last):
                    gap: list[Event | DeltaEvent] = [*self._fresh(await self._range())]
                    if gap:
                        yield gap
                fresh: list[Event | DeltaEvent] = [*self._fresh(item.events)]
                if not self.ended:
                    fresh += self._current(item.deltas)
                if fresh:
                    yield fresh
        finally:
            self.hub.leave(feed, queue)
