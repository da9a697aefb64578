"""OpenTelemetry spans of a two-tool turn, seen by the SDK's in-memory exporter (issue 16.2)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from runner import logs
from runner.client import Submission, open_client
from runner.events import Status, StatusEvent, to_json
from runner.settings import Settings, get_settings
from tests.conftest import Server
from tests.helpers import write_script


@pytest.fixture
def exporter(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    # The global provider can be set once per process; this test's own stands in for it.
    monkeypatch.setattr(trace, "get_tracer", provider.get_tracer)
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: provider)
    yield memory
    provider.shutdown()


def two_tool_turn(server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a two-tool turn in this process; its run id."""
    monkeypatch.setattr(logs, "_bound", {})  # the turn binds its run fields in-process
    monkeypatch.setenv("RUNNER_REDIS_URL", server.url)
    monkeypatch.setenv("RUNNER_WORKSPACE_ROOT", str(tmp_path / "ws"))
    get_settings.cache_clear()
    steps = [
        {"content": "one", "tool": "shell", "args": {"command": "echo a"}},
        {"content": "two", "tool": "write_file", "args": {"path": "x.txt", "content": "x"}},
        {"content": "done"},
    ]
    script = write_script(tmp_path / "s.json", steps).read_text()
    client = open_client(Settings(redis_url=server.url))
    run_id = client.submit(Submission(prompt="hi", model="scripted", script=script))
    import workers.turn

    # A work horse ends with os._exit; in this process, its connections are closed here.
    opened: list[redis.Redis] = []
    connect = workers.turn.connect
    monkeypatch.setattr(
        workers.turn, "connect", lambda *a, **k: opened.append(connect(*a, **k)) or opened[-1]
    )
    try:
        assert workers.turn.run_turn(run_id) == "final answer"
    finally:
        get_settings.cache_clear()
        for conn in [*opened, client.redis]:
            conn.connection_pool.disconnect()
    return run_id


def running_event(server: Server, run_id: str) -> StatusEvent:
    client = open_client(Settings(redis_url=server.url))
    events = client.store.events(run_id)
    client.redis.connection_pool.disconnect()
    (running,) = [e for e in events if isinstance(e, StatusEvent) and e.status is Status.RUNNING]
    return running


def test_a_two_tool_turn_has_an_attempt_span_with_model_and_tool_spans(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exporter: InMemorySpanExporter
) -> None:
    run_id = two_tool_turn(server, tmp_path, monkeypatch)
    spans = exporter.get_finished_spans()
    (attempt,) = [s for s in spans if s.name == "attempt"]
    assert attempt.attributes["run"] == run_id
    assert attempt.attributes["status"] == "succeeded"
    children = [s for s in spans if s.parent is not None]
    assert [s.name for s in children] == [
        "model call",
        "tool call",
        "model call",
        "tool call",
        "model call",
    ]
    assert all(s.context.trace_id == attempt.context.trace_id for s in children)
    assert [s.attributes["tool"] for s in children if s.name == "tool call"] == [
        "shell",
        "write_file",
    ]
    # The running status event names the attempt's trace, so a follower can look it up.
    assert running_event(server, run_id).trace == format(attempt.context.trace_id, "032x")


def test_without_a_tracer_the_status_event_has_no_trace(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    running = running_event(server, two_tool_turn(server, tmp_path, monkeypatch))
    assert running.worker and running.trace is None
    assert '"trace"' not in to_json(running)
