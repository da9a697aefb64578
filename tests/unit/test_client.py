"""The client as the one API (checks, error boundary, resuming a follow) and the CLI's
rendering (one renderer per event type, control characters made visible), on fakeredis.
"""

from __future__ import annotations

import io
from typing import Any, get_args

import fakeredis
import pytest
import redis
from rich.console import Console

from runner.checks import check_text, decode_text
from runner.cli import render
from runner.client import Client, Submission
from runner.errors import BadInput, RunnerError, ServerUnavailable
from runner.events import Event, MessageEvent, Status, StatusEvent
from runner.keys import Keys
from runner.settings import Settings
from runner.store import RunRecord, RunStore

SCRIPT = '{"steps": [{"content": "done"}]}'


@pytest.fixture
def client() -> Client:
    """A client whose connections are fakeredis (set before first use, so none is made)."""
    settings = Settings(redis_url="redis://unused", max_prompt_bytes=64)
    c = Client(settings)
    fake = fakeredis.FakeRedis(decode_responses=True)
    c.redis = fake
    c.rq = fakeredis.FakeRedis(server=fake.connection_pool.connection_kwargs["server"])
    c.store = RunStore(fake, Keys(settings.prefix))
    return c


def test_every_event_type_has_a_renderer() -> None:
    (union, *_) = get_args(Event)
    for kind in get_args(union):
        assert kind.model_fields["type"].default in render.RENDERERS, kind


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\x1b]52;c;aGk=\x07", "\\x1b]52;c;aGk=\\x07"),
        ("\x1b]0;title\x07", "\\x1b]0;title\\x07"),
        ("\x1b[2J", "\\x1b[2J"),
        ("a\tb\nc", "a\tb\nc"),
        ("over\rwrite", "over\\rwrite"),
        ("\x9b2J", "\\x9b2J"),
        ("\u202eevil", "\\u202eevil"),
        ("caf\udce9", "caf\\udce9"),
        ("plain ünïcödé ✓", "plain ünïcödé ✓"),
    ],
)
def test_visible(raw: str, shown: str) -> None:
    assert render.visible(raw) == shown


def test_a_damaged_record_lists_as_damaged() -> None:
    sound = RunRecord(
        id="r0000000000deadbeef", status=Status.SUCCEEDED, epoch=1, queue="q", model="m"
    )
    broken = sound.model_copy(update={"id": "r0000000000deadbee0", "damaged": "no stream"})
    buf = io.StringIO()
    render.runs(Console(file=buf, width=200, no_color=True), [sound, broken])
    lines = buf.getvalue().splitlines()
    assert "succeeded" in lines[1] and "DAMAGED" not in lines[1]
    assert "DAMAGED" in lines[2] and "no stream" in lines[2]


def test_unknown_event_types_render_without_failing() -> None:
    ev: Any = StatusEvent(status=Status.QUEUED)
    object.__setattr__(ev, "type", "future")
    assert "future event" in render.event_text(ev).plain


def test_text_checks() -> None:
    assert check_text("hi", "the prompt", 10) == "hi"
    with pytest.raises(BadInput, match=r"not valid UTF-8 \(byte 0xff at character 2\)"):
        check_text("hi\udcff", "the prompt", 10)
    with pytest.raises(BadInput, match="empty"):
        check_text(" \n", "the prompt", 10)
    with pytest.raises(BadInput, match="over the limit of 3 bytes"):
        check_text("four", "the prompt", 3)
    with pytest.raises(BadInput, match=r"byte 0xe9 at offset 3"):
        decode_text(b"caf\xe9", "the prompt", 10)


@pytest.mark.parametrize(
    ("sub", "phrase"),
    [
        (Submission("hi", model="", script=SCRIPT), "unknown model ''"),
        (Submission("hi", queue="", script=SCRIPT), "not a queue name: ''"),
        (Submission("hi", max_steps=0, script=SCRIPT), "max steps"),
        (Submission("hi", session="../x", script=SCRIPT), "not a session name"),
        (Submission("hi"), "needs --script"),
        (Submission("hi", script="{"), "bad script"),
        (Submission("x" * 65, script=SCRIPT), "RUNNER_MAX_PROMPT_BYTES"),
    ],
)
def test_submit_checks_everything_before_writing(
    client: Client, sub: Submission, phrase: str
) -> None:
    with pytest.raises(BadInput, match=phrase):
        client.submit(sub)
    assert client.redis.keys("*") == []


def test_defaults_come_from_settings(client: Client) -> None:
    run_id = client.submit(Submission("hi", script=SCRIPT))
    record = client.get(run_id)
    assert (record.model, record.queue, record.max_steps) == ("scripted", "default", 50)


def test_follow_resumes_after_an_event(client: Client) -> None:
    run_id = client.submit(Submission("hi", script=SCRIPT))
    client.cancel(run_id)
    everything = list(client.follow(run_id))
    assert [type(e) for e in everything] == [StatusEvent, MessageEvent, StatusEvent]
    assert list(client.follow(run_id, after=everything[0].id)) == everything[1:]
    assert list(client.follow(run_id, after=everything[-1].id)) == []
    with pytest.raises(BadInput, match="not an event id"):
        list(client.follow(run_id, after="nope"))
    assert [m.content for m in client.transcript(run_id)] == ["hi"]


def test_redis_errors_leave_the_client_as_runner_errors(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = client.submit(Submission("hi", script=SCRIPT))

    def down(*_: Any) -> Any:
        raise redis.ConnectionError("reset by peer")

    def wrong(*_: Any) -> Any:
        raise redis.ResponseError("WRONGTYPE")

    monkeypatch.setattr(client.store, "get", down)
    with pytest.raises(ServerUnavailable, match="lost the Redis connection") as info:
        client.get(run_id)
    assert isinstance(info.value.__cause__, redis.ConnectionError)
    monkeypatch.setattr(client.store, "get", wrong)
    with pytest.raises(RunnerError, match="Redis error: WRONGTYPE"):
        client.cancel(run_id)


def test_steering_an_ended_run_is_bad_input(client: Client) -> None:
    run_id = client.submit(Submission("hi", script=SCRIPT))
    assert client.cancel(run_id) is Status.QUEUED
    with pytest.raises(BadInput, match="already ended"):
        client.cancel(run_id)
    with pytest.raises(BadInput, match="not suspended or waiting"):
        client.resume(run_id)
    with pytest.raises(BadInput, match="it takes no messages"):
        client.send(run_id, "more")
