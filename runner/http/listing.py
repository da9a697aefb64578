"""The runs list, live: one cheap poll of the runs index for the whole app, pushed over SSE.

Every write to a run (claim, commit, finish) moves it in the runs index (a sorted set
scored by the server's ``updated_ms``), so "what changed since T" is one
``ZRANGEBYSCORE`` that returns nothing when nothing changed. One poller per app asks
that once a second, only while someone watches, and sends each watcher the records
that moved; a hundred open list pages cost the same one query a second, and nothing is
sent while the fleet is idle. Redis has no change feed for a key that we could block
on without config (keyspace notifications) or a second stream written by every script.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator

from redis import RedisError
from sse_starlette import ServerSentEvent
from starlette.concurrency import run_in_threadpool

from runner.client import Client
from runner.errors import RunnerError
from runner.store import RunRecord

log = logging.getLogger("runner.http.listing")
POLL_SECONDS = 1.0
QUEUE_LIMIT = 100  # updates a slow watcher may lag before it is dropped (it reconnects)


def dumped(records: list[RunRecord]) -> str:
    return json.dumps({"runs": [r.model_dump(mode="json") for r in records]})


class RunsWatch:
    """The app's one poller of the runs index, and the queues of those who watch it."""

    def __init__(self, client: Client, poll: float = POLL_SECONDS) -> None:
        self.client = client
        self.poll = poll
        self.watchers: set[asyncio.Queue[list[RunRecord] | None]] = set()
        self.task: asyncio.Task[None] | None = None
        self.polls = 0  # index queries made (for tests)

    def changed_since(
        self, since: float, seen: set[str]
    ) -> tuple[list[RunRecord], float, set[str]]:
        """Records updated at ``since`` or later, not in ``seen`` (ids at ``since``)."""
        self.polls += 1
        redis, keys = self.client.store.redis, self.client.keys
        moved = redis.zrangebyscore(keys.runs, since, "+inf", withscores=True)
        fresh = [(run_id, score) for run_id, score in moved if run_id not in seen or score > since]
        if not fresh:
            return [], since, seen
        newest = max(score for _, score in moved)
        at_newest = {run_id for run_id, score in moved if score == newest}
        return self.client.store.get_many([run_id for run_id, _ in fresh]), newest, at_newest

    async def _run(self, since: float, seen: set[str]) -> None:
        while self.watchers:
            try:
                records, since, seen = await run_in_threadpool(self.changed_since, since, seen)
            except (RunnerError, RedisError) as exc:  # watchers keep their page; we retry
                log.warning("list_poll_failed", extra={"error": str(exc)})
                records = []
            if records:
                for queue in list(self.watchers):
                    if queue.qsize() >= QUEUE_LIMIT:
                        self.watchers.discard(queue)
                        queue.put_nowait(None)
                    else:
                        queue.put_nowait(records)
            await asyncio.sleep(self.poll)
        self.task = None

    async def open(self, limit: int) -> AsyncIterator[ServerSentEvent]:
        """A new watcher's stream: joined first, then its list read, so no change slips by.

        The list is read before the response starts, so a server that cannot be reached
        is an error the endpoint answers (503), not a broken stream.
        """
        queue: asyncio.Queue[list[RunRecord] | None] = asyncio.Queue()
        self.watchers.add(queue)
        try:
            records = await run_in_threadpool(self.client.runs, None, limit)
        except BaseException:
            self.watchers.discard(queue)
            raise
        return self.stream(queue, records)

    async def stream(
        self, queue: asyncio.Queue[list[RunRecord] | None], records: list[RunRecord]
    ) -> AsyncIterator[ServerSentEvent]:
        """``records`` (``event: list``), then the runs that change (``event: changed``)."""
        try:
            if self.task is None:
                # The list is current as of now: poll for what moves after it.
                newest = max((r.updated_ms for r in records), default=0)
                seen = {r.id for r in records if r.updated_ms == newest}
                self.task = asyncio.create_task(self._run(float(newest), seen))
            yield ServerSentEvent(data=dumped(records), event="list")
            while (changed := await queue.get()) is not None:
                yield ServerSentEvent(data=dumped(changed), event="changed")
        finally:
            self.watchers.discard(queue)

    async def close(self) -> None:
        self.watchers.clear()
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
