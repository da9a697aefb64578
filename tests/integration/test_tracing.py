"""OpenTelemetry spans of a two-tool turn, seen by the SDK's in-memory exporter (issue 16.2)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from runner import logs
from runner.client import Submission, open_client
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


def test_a_two_tool_turn_has_an_attempt_span_with_model_and_tool_spans(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exporter: InMemorySpanExporter
) -> None:
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
    from workers.turn import run_turn

    try:
        assert run_turn(run_id) == "final answer"
    finally:
        get_settings.cache_clear()
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
