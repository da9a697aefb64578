"""Issue 12, point 5: the Anthropic provider against a fake Messages API.

The server is real HTTP on loopback (tests/fake_models.py), speaking the Messages
streaming wire format: message_start, content_block_start/delta/stop with text_delta
and input_json_delta, message_delta with usage, message_stop.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from runner.errors import ModelError
from tests.fake_models import FakeAnthropic, serving, text, tool_use
from workers.providers import ToolCall, ToolSpec, Usage
from workers.providers.anthropic import AnthropicModel, to_messages
from workers.stop import Stop

KEY = "sk-ant-fake-" + "Qx7" * 10
TOOLS = [ToolSpec("shell", "Run a command", {"type": "object", "properties": {}})]


@pytest.fixture
def fake() -> Iterator[FakeAnthropic]:
    with serving(FakeAnthropic()) as server:
        yield server


class Sink:
    def __init__(self) -> None:
        self.got: list[tuple[str, Any]] = []

    def text(self, chunk: str) -> None:
        self.got.append(("text", chunk))

    def args(self, call: int, name: str, chunk: str) -> None:
        self.got.append(("args", (call, name, chunk)))

    def note(self, text: str) -> None:
        self.got.append(("note", text))

    def reset(self) -> None:
        self.got.append(("reset", None))


def model(url: str) -> AnthropicModel:
    return AnthropicModel("claude-fake", url, api_key=KEY, backoff=0.01, timeout=10)


def tool_turn() -> list[dict[str, Any]]:
    """A transcript in OpenAI shape: system, user, a tool call, its result."""
    call = {
        "id": "toolu_1",
        "type": "function",
        "function": {"name": "shell", "arguments": '{"command": "ls"}'},
    }
    return [
        {"role": "system", "content": "You are careful."},
        {"role": "user", "content": "look"},
        {"role": "assistant", "content": "Looking.", "tool_calls": [call]},
        {"role": "tool", "content": "a.txt", "tool_call_id": "toolu_1", "name": "shell"},
    ]


def test_a_streamed_multi_step_tool_turn_maps_both_ways(fake: FakeAnthropic) -> None:
    fake.stream(
        text("Let me ", "look."),
        tool_use("toolu_1", "shell", '{"comm', 'and": "ls"}'),
        input_tokens=3,
        cache_creation_input_tokens=90,
        cache_read_input_tokens=0,
    )
    fake.stream(text("Found a.txt."), input_tokens=5, cache_read_input_tokens=90)
    sink = Sink()
    m = model(fake.url)
    first = m.complete(tool_turn()[:2], TOOLS, Stop(5), sink=sink)
    assert first.content == "Let me look."
    assert first.tool_calls == [ToolCall("toolu_1", "shell", {"command": "ls"})]
    assert first.usage == Usage(93, 7, cache_read_tokens=0, cache_write_tokens=90)
    assert [g for g in sink.got if g[0] == "text"] == [("text", "Let me "), ("text", "look.")]
    assert ("args", (0, "shell", '{"comm')) in sink.got
    second = m.complete(tool_turn(), TOOLS, Stop(5), sink=sink)
    assert second.content == "Found a.txt." and second.tool_calls == []
    assert second.usage == Usage(95, 7, cache_read_tokens=90, cache_write_tokens=0)

    sent = fake.requests[1]
    assert sent["stream"] is True and sent["model"] == "claude-fake" and sent["max_tokens"] > 0
    assert sent["system"] == [
        {"type": "text", "text": "You are careful.", "cache_control": {"type": "ephemeral"}}
    ]
    assert sent["tools"][-1]["input_schema"] == {"type": "object", "properties": {}}
    assert sent["tools"][-1]["cache_control"] == {"type": "ephemeral"}
    assert sent["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "look"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Looking."},
                {"type": "tool_use", "id": "toolu_1", "name": "shell", "input": {"command": "ls"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_1",
                    "content": "a.txt",
                    "cache_control": {"type": "ephemeral"},
                }
            ],
        },
    ]
    sent_key = fake.headers[0].get("x-api-key") or fake.headers[0]["authorization"]
    assert sent_key.removeprefix("Bearer ") == KEY


def test_tool_results_and_a_steering_message_share_one_user_turn() -> None:
    calls = [
        {"id": f"t{i}", "type": "function", "function": {"name": "shell", "arguments": "{}"}}
        for i in range(2)
    ]
    messages = [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": "", "tool_calls": calls},
        {"role": "tool", "content": "one", "tool_call_id": "t0", "name": "shell"},
        {"role": "tool", "content": "", "tool_call_id": "t1", "name": "shell"},
        {"role": "user", "content": "also this"},
        {"role": "assistant", "content": ""},  # an empty answer is left out
    ]
    system, wire = to_messages(messages)
    assert system == []
    assert [m["role"] for m in wire] == ["user", "assistant", "user"]
    assert [b["type"] for b in wire[1]["content"]] == ["tool_use", "tool_use"]
    last = wire[2]["content"]
    assert [b.get("tool_use_id") or b.get("text") for b in last] == ["t0", "t1", "also this"]
    assert last[1]["content"] == "(no output)"
    assert "cache_control" in last[-1] and "cache_control" not in last[0]


def test_a_429_with_retry_after_then_a_500_then_success(fake: FakeAnthropic) -> None:
    fake.error(
        429,
        {"type": "error", "error": {"type": "rate_limit_error", "message": "slow"}},
        {"retry-after": "1"},
    )
    fake.error(500, {"type": "error", "error": {"type": "api_error", "message": "oops"}})
    fake.stream(text("fine"))
    sink = Sink()
    reply = model(fake.url).complete([{"role": "user", "content": "hi"}], [], Stop(5), sink=sink)
    assert reply.content == "fine" and len(fake.requests) == 3
    notes = [g[1] for g in sink.got if g[0] == "note"]
    assert notes[0] == "rate limited, retrying in 1 s"
    assert notes[1].startswith("server error (500), retrying in ")


def test_an_overloaded_error_inside_the_stream_is_retried(fake: FakeAnthropic) -> None:
    overloaded = {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}
    fake.events([("error", overloaded)])
    fake.stream(text("after the wait"))
    sink = Sink()
    reply = model(fake.url).complete([{"role": "user", "content": "hi"}], [], Stop(5), sink=sink)
    assert reply.content == "after the wait" and len(fake.requests) == 2
    assert any(g == ("note", "model overloaded, retrying in 0 s") for g in sink.got)


def test_a_connection_dropped_mid_stream_is_retried_and_supersedes_the_partial(
    fake: FakeAnthropic,
) -> None:
    fake.stream(text("half an ans"), drop=True)
    fake.stream(text("a whole answer"))
    sink = Sink()
    reply = model(fake.url).complete([{"role": "user", "content": "hi"}], [], Stop(5), sink=sink)
    assert reply.content == "a whole answer" and len(fake.requests) == 2
    kinds = [g[0] for g in sink.got]
    assert kinds.index("reset") > kinds.index("text")
    after_reset = [g[1] for g in sink.got[kinds.index("reset") :] if g[0] == "text"]
    assert after_reset == ["a whole answer"]


def test_malformed_tool_input_is_kept_raw(fake: FakeAnthropic) -> None:
    fake.stream(tool_use("toolu_9", "shell", "{oops"))
    reply = model(fake.url).complete([{"role": "user", "content": "hi"}], TOOLS, Stop(5))
    assert reply.tool_calls == [ToolCall("toolu_9", "shell", {"_raw": "{oops"})]
    # Sent back, the raw text is what the model is shown it asked for.
    assistant = {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {
                "id": "toolu_9",
                "type": "function",
                "function": {"name": "shell", "arguments": json.dumps({"_raw": "{oops"})},
            }
        ],
    }
    _, wire = to_messages([{"role": "user", "content": "hi"}, assistant])
    assert wire[1]["content"][0]["input"] == {"_raw": "{oops"}


@pytest.mark.parametrize(
    ("status", "kind"),
    [(400, "invalid_request_error"), (401, "authentication_error"), (403, "permission_error")],
)
def test_client_errors_fail_fast_without_the_key(
    fake: FakeAnthropic, status: int, kind: str
) -> None:
    fake.error(status, {"type": "error", "error": {"type": kind, "message": f"bad key {KEY}"}})
    with pytest.raises(ModelError) as info:
        model(fake.url).complete([{"role": "user", "content": "hi"}], [], Stop(5))
    assert len(fake.requests) == 1
    assert KEY not in str(info.value) and str(status) in str(info.value)
    assert str(info.value).startswith("anthropic: ")


def test_context_length_is_named(fake: FakeAnthropic) -> None:
    message = "prompt is too long: 212000 tokens > 200000 maximum"
    fake.error(
        400, {"type": "error", "error": {"type": "invalid_request_error", "message": message}}
    )
    with pytest.raises(ModelError, match="longer than the model's context window"):
        model(fake.url).complete([{"role": "user", "content": "hi"}], [], Stop(5))
    assert len(fake.requests) == 1


def test_a_stop_abandons_the_call_and_a_window_is_known() -> None:
    stop = Stop(5)
    stop.request()
    from workers.providers import Interrupted

    with pytest.raises(Interrupted):
        model("http://127.0.0.1:9").complete([], [], stop)
    assert model("x").context_window("claude-sonnet-4-5") == 200_000
    assert model("x").context_window("other") is None
