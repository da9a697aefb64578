"""Issue 12, point 1: the delta channel (writer batching, reader staleness, scripted stream)."""

from __future__ import annotations

import time
from typing import Any

import fakeredis

from runner.deltas import DeltaWriter, LiveReader, stream_order
from runner.events import DeltaEvent, MessageEvent, decode_delta, to_json
from runner.keys import Keys, new_run_id
from runner.script import Script
from runner.waiting import wait_until
from workers.providers.scripted import ScriptedModel, chunks
from workers.stop import Stop


class Recorder:
    """A sink that keeps what it is given, with when."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any, float]] = []

    def text(self, chunk: str) -> None:
        self.calls.append(("text", chunk, time.monotonic()))

    def args(self, call: int, name: str, chunk: str) -> None:
        self.calls.append(("args", (call, name, chunk), time.monotonic()))

    def note(self, text: str) -> None:
        self.calls.append(("note", text, time.monotonic()))

    def reset(self) -> None:
        self.calls.append(("reset", None, time.monotonic()))


def _writer(flush: float = 0.05) -> tuple[DeltaWriter, Any, str]:
    r = fakeredis.FakeRedis(decode_responses=True)
    run_id = new_run_id()
    key = Keys().deltas(run_id)
    return DeltaWriter(r, key, 3, flush_seconds=flush, maxlen=50, ttl_seconds=30), r, key


def test_a_fast_stream_is_batched_and_the_stream_is_capped_and_expires() -> None:
    writer, r, key = _writer(flush=0.05)
    writer.begin("1700000000000-0")
    for _ in range(2000):  # 2,000 tokens as fast as a model can send them
        writer.text("tok ")
    wait_until(lambda: writer.writes and not writer._pending, 5, 0.01, "flush", AssertionError)
    writer.close()
    assert writer.writes <= 50
    entries = r.xrange(key)
    text = "".join(decode_delta("r", eid, f).text for eid, f in entries)
    assert text == "tok " * 2000
    assert 0 < r.pttl(key) <= 30_000
    delta = decode_delta("r", *entries[0])
    assert (delta.epoch, delta.after, delta.kind) == (3, "1700000000000-0", "text")


def test_a_lone_chunk_is_written_within_the_flush_interval() -> None:
    writer, r, key = _writer(flush=0.05)
    writer.begin("5-0")
    start = time.monotonic()
    writer.note("rate limited, retrying in 8 s")
    wait_until(lambda: r.xlen(key), 5, 0.005, "a delta", AssertionError)
    assert time.monotonic() - start < 2  # a guarantee bound, not a timing figure
    writer.close()


def test_the_stream_is_capped() -> None:
    writer, r, key = _writer(flush=0.001)
    for i in range(300):
        writer.begin(f"{i}-0")  # a new point each time, so no merging
        writer.note(f"n{i}")
        wait_until(lambda: not writer._pending, 5, 0.001, "flush", AssertionError)
    writer.close()
    assert r.xlen(key) < 200  # MAXLEN ~ 50: trimmed in whole nodes, never unbounded


def test_reader_drops_deltas_a_committed_event_supersedes() -> None:
    r = fakeredis.FakeRedis(decode_responses=True)
    keys = Keys()
    run_id = new_run_id()
    old = r.xadd(
        keys.events(run_id),
        {"v": "1", "type": "message", "epoch": "1", "data": '{"role":"user","content":"hi"}'},
    )
    writer = DeltaWriter(r, keys.deltas(run_id), 1, flush_seconds=0.001)
    writer.begin(old)
    writer.text("partial")
    wait_until(lambda: r.exists(keys.deltas(run_id)), 5, 0.005, "a delta", AssertionError)
    reader = LiveReader(r, keys, run_id)
    committed, deltas = reader.read("0-0", 10)
    assert [type(e) for e in committed] == [MessageEvent]
    assert [d.text for d in deltas] == ["partial"]
    assert deltas[0].ephemeral and '"ephemeral":true' in to_json(deltas[0])
    # The answer is committed: a follower that has seen it gets no stale delta.
    new = r.xadd(
        keys.events(run_id),
        {
            "v": "1",
            "type": "message",
            "epoch": "1",
            "data": '{"role":"assistant","content":"partial."}',
        },
    )
    writer.text(" more")
    wait_until(lambda: r.xlen(keys.deltas(run_id)) == 2, 5, 0.005, "a delta", AssertionError)
    writer.close()
    committed, deltas = reader.read(old, 10)
    assert [e.id for e in committed] == [new] and deltas == []
    assert stream_order(new) > stream_order(old) > stream_order("-")


def test_scripted_model_streams_its_content_over_its_sleep() -> None:
    step = {
        "content": "one two three four five",
        "tool": "shell",
        "args": {"command": "ls"},
        "sleep": 0.3,
    }
    model = ScriptedModel(Script.model_validate({"steps": [step]}))
    sink = Recorder()
    start = time.monotonic()
    reply = model.complete([], [], Stop(5), step=0, sink=sink)
    texts = [c for kind, c, _ in sink.calls if kind == "text"]
    assert "".join(texts) == reply.content == "one two three four five"
    assert len(texts) > 1
    assert sink.calls[0][2] - start < 0.3 - 0.01  # the first chunk before the sleep ends
    assert sink.calls[-1][:2] == ("args", (0, "shell", '{"command": "ls"}'))


def test_scripted_model_without_sleep_streams_nothing() -> None:
    sink = Recorder()
    ScriptedModel(Script.model_validate({"steps": [{"content": "x"}]})).complete(
        [], [], Stop(5), sink=sink
    )
    assert sink.calls == []
    assert chunks("", 1.0) == [] and "".join(chunks("a  b c", 0.1)) == "a  b c"
    assert len(chunks("w " * 1000, 0.2)) <= 10


def test_delta_is_not_part_of_the_transcript_union() -> None:
    from pydantic import TypeAdapter, ValidationError

    from runner.events import Event

    adapter: TypeAdapter[Event] = TypeAdapter(Event)
    try:
        adapter.validate_python({"type": "delta", "text": "x"})
    except ValidationError:
        pass
    else:
        raise AssertionError("a delta must not validate as a stored event")
    assert DeltaEvent(text="x").type == "delta"


def test_an_outage_back_off_is_told_to_the_hook() -> None:
    import logging

    import redis

    from runner import outage

    notes: list[str] = []
    calls = iter([redis.ConnectionError("down"), None])

    def write() -> str:
        exc = next(calls)
        if exc is not None:
            raise exc
        return "ok"

    policy = outage.retrying(5, logging.getLogger("t"), {}, max_wait=0.01, on_wait=notes.append)
    assert policy(write) == "ok"
    assert len(notes) == 1 and notes[0].startswith("server unreachable; retrying in ")


def test_the_first_chunk_after_a_quiet_spell_goes_at_once_and_the_rest_waits() -> None:
    writer, r, key = _writer(flush=5.0)  # a window far longer than the bound below
    writer.begin("5-0")
    start = time.monotonic()
    writer.text("first")
    wait_until(lambda: r.xlen(key), 2, 0.005, "the first chunk", AssertionError)
    assert time.monotonic() - start < 2  # not held for the 5 s window
    writer.text(" second")  # inside the window: merged into the next write
    assert r.xlen(key) == 1 and writer.writes == 1
    writer.close()
