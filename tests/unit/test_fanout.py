"""The SSE fan-out's handling of deltas (issue 15.2), on fakeredis, without a reader thread.

The feed's batches are published by hand, so the order of committed events and deltas a
subscriber sees is exactly what is asserted.
"""

from __future__ import annotations

import asyncio
import itertools

import fakeredis

from runner.client import Client, Submission
from runner.events import DeltaEvent, Event, MessageEvent
from runner.http.fanout import Batch, End, Feed, Hub, Subscription
from runner.keys import Keys
from runner.settings import Settings
from runner.store import RunStore

SCRIPT = '{"steps": [{"content": "done"}]}'


def fake_client() -> Client:
    settings = Settings(redis_url="redis://unused")
    client = Client(settings)
    fake = fakeredis.FakeRedis(decode_responses=True)
    client.redis = fake
    client.rq = fakeredis.FakeRedis(server=fake.connection_pool.connection_kwargs["server"])
    client.store = RunStore(fake, Keys(settings.prefix))
    return client


_delta_ids = itertools.count(1)


def delta(after: str, text: str) -> DeltaEvent:
    """A delta with an id of its own, newer than every one made before."""
    return DeltaEvent(id=f"9{next(_delta_ids):012d}-0", after=after, text=text)


def commit(client: Client, run_id: str, content: str) -> list[Event]:
    """Claim the run and commit an answer; the events this added (its status, the answer)."""
    before = len(client.store.events(run_id))
    epoch = client.store.claim(run_id, "w1", 30)
    assert epoch is not None
    seen = len(client.store.events(run_id))
    client.store.commit(run_id, epoch, [MessageEvent(role="assistant", content=content)], seen)
    return client.store.events(run_id)[before:]


def test_a_late_subscriber_starts_with_the_text_so_far_then_only_current_deltas() -> None:
    client = fake_client()
    run_id = client.submit(Submission(prompt="hi", model="scripted", script=SCRIPT))
    hub = Hub(client)

    async def scenario() -> list[Event | DeltaEvent]:
        before = client.store.events(run_id)
        tip = before[-1].id
        feed = hub.feeds[run_id] = Feed(run_id)  # a running feed: join starts no thread
        hub._publish(feed, Batch(tip, [], [delta("0-1", "stale"), delta(tip, "Hel")]))
        sub = Subscription(hub, run_id, "0-0")
        stream = sub.events()
        replay = await anext(stream)  # the stream so far, then the text in flight
        added = commit(client, run_id, "Hello")
        answer = added[-1]
        hub._publish(feed, Batch(tip, added, [delta(answer.id, "next")]))
        live = await anext(stream)
        hub._publish(feed, Batch(answer.id, [], [delta(tip, "late"), delta(answer.id, "!")]))
        more = await anext(stream)
        await stream.aclose()
        assert run_id not in hub.feeds  # the last subscriber left: the feed stops
        return [*replay, *live, *more]

    got = asyncio.run(scenario())
    shown = [(e.type, e.text if isinstance(e, DeltaEvent) else "") for e in got]
    committed = [e for e in got if not isinstance(e, DeltaEvent)]
    assert [e.id for e in committed] == [e.id for e in client.store.events(run_id)]
    # "stale" precedes the tip; "late" precedes the answer already delivered: both dropped.
    # Each delta comes after the committed event it follows, and before the next one.
    assert shown == [
        ("status", ""),  # queued
        ("message", ""),  # the prompt
        ("delta", "Hel"),
        ("status", ""),  # running
        ("message", ""),  # the answer, committed
        ("delta", "next"),
        ("delta", "!"),
    ]


def test_an_end_flushes_the_last_committed_events_and_no_delta() -> None:
    client = fake_client()
    run_id = client.submit(Submission(prompt="hi", model="scripted", script=SCRIPT))
    hub = Hub(client)

    async def scenario() -> tuple[list[Event | DeltaEvent], list[Event | DeltaEvent]]:
        feed = hub.feeds[run_id] = Feed(run_id)
        sub = Subscription(hub, run_id, "0-0")
        stream = sub.events()
        replay = await anext(stream)
        commit(client, run_id, "done")
        hub._publish(feed, End())
        rest = [e for batch in [b async for b in stream] for e in batch]
        return replay, rest

    replay, rest = asyncio.run(scenario())
    assert [e.id for e in replay + rest] == [e.id for e in client.store.events(run_id)]
    assert not any(isinstance(e, DeltaEvent) for e in rest)


def test_text_in_flight_at_the_replay_and_queued_too_is_sent_once() -> None:
    """A feed read published after the subscriber joined, before its replay: its deltas
    are both the replay's text in flight and the first queued batch."""
    client = fake_client()
    run_id = client.submit(Submission(prompt="hi", model="scripted", script=SCRIPT))
    hub = Hub(client)

    async def scenario() -> list[Event | DeltaEvent]:
        tip = client.store.events(run_id)[-1].id
        feed = hub.feeds[run_id] = Feed(run_id)
        sub = Subscription(hub, run_id, "0-0")
        stream = sub.events()
        first = asyncio.ensure_future(anext(stream))  # joins, then awaits its replay
        await asyncio.sleep(0)
        hub._publish(feed, Batch(tip, [], [delta(tip, "Hel")]))
        replay = await first
        hub._publish(feed, Batch(tip, [], [delta(tip, "lo")]))
        live = await anext(stream)
        await stream.aclose()
        return [*replay, *live]

    got = asyncio.run(scenario())
    texts = [e.text for e in got if isinstance(e, DeltaEvent)]
    assert texts == ["Hel", "lo"]
