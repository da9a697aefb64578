"""Issue 12, point 4: the OpenAI provider against a fake OpenAI-compatible server.

The server is real HTTP on loopback (tests/fake_models.py), started by a fixture,
speaking the chat completions streaming wire format (Server-Sent Events, ``data: [DONE]``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from runner.errors import ModelError
from tests.fake_models import FakeOpenAI, chunk, serving
from workers.providers import Interrupted, ToolCall, ToolSpec, Usage
from workers.providers.openai_chat import OpenAIModel
from workers.stop import Stop

KEY = "sk-fake-" + "Zq9" * 10


@pytest.fixture
def fake() -> Iterator[tuple[FakeOpenAI, str]]:
    with serving(FakeOpenAI()) as server:
        yield server, server.url + "/v1"


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


def model(url: str) -> OpenAIModel:
    return OpenAIModel("fake", url, api_key=KEY, backoff=0.01, timeout=10)


def test_streamed_text_tool_call_fragments_and_usage(fake: tuple[FakeOpenAI, str]) -> None:
    server, url = fake
    call = {"index": 0, "id": "call_a", "type": "function", "function": {"name": "shell"}}
    server.stream(
        chunk({"role": "assistant", "content": "Let me "}),
        chunk({"content": "look."}),
        chunk({"tool_calls": [{**call, "function": {"name": "shell", "arguments": '{"comm'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'and": "ls"}'}}]}),
        chunk({}, usage={"prompt_tokens": 11, "completion_tokens": 5}),
    )
    sink = Sink()
    tools = [ToolSpec("shell", "Run", {"type": "object", "properties": {}})]
    reply = model(url).complete([{"role": "user", "content": "hi"}], tools, Stop(5), sink=sink)
    assert reply.content == "Let me look."
    assert reply.tool_calls == [ToolCall("call_a", "shell", {"command": "ls"})]
    assert reply.usage == Usage(11, 5)
    assert [g for g in sink.got if g[0] == "text"] == [("text", "Let me "), ("text", "look.")]
    assert ("args", (0, "shell", '{"comm')) in sink.got
    sent = server.requests[0]
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}


def test_a_429_with_retry_after_then_a_500_then_success(fake: tuple[FakeOpenAI, str]) -> None:
    server, url = fake
    server.error(429, {"error": {"message": "slow down", "type": "rate"}}, {"retry-after": "1"})
    server.error(500, {"error": {"message": "oops", "type": "server"}})
    server.stream(chunk({"content": "fine"}))
    sink = Sink()
    reply = model(url).complete([], [], Stop(5), sink=sink)
    assert reply.content == "fine" and len(server.requests) == 3
    notes = [g[1] for g in sink.got if g[0] == "note"]
    assert notes[0] == "rate limited, retrying in 1 s"
    assert notes[1].startswith("server error (500), retrying in ")


def test_a_connection_dropped_mid_stream_is_retried_and_supersedes_the_partial(
    fake: tuple[FakeOpenAI, str],
) -> None:
    server, url = fake
    server.stream(chunk({"content": "half an ans"}), drop=True)
    server.stream(chunk({"content": "a whole answer"}))
    sink = Sink()
    reply = model(url).complete([], [], Stop(5), sink=sink)
    assert reply.content == "a whole answer"
    kinds = [g[0] for g in sink.got]
    assert kinds.index("reset") > kinds.index("text")


def test_malformed_tool_arguments_are_kept_raw(fake: tuple[FakeOpenAI, str]) -> None:
    server, url = fake
    bad = {
        "index": 0,
        "id": "c1",
        "type": "function",
        "function": {"name": "shell", "arguments": "{oops"},
    }
    server.stream(chunk({"tool_calls": [bad]}))
    reply = model(url).complete([], [], Stop(5))
    assert reply.tool_calls == [ToolCall("c1", "shell", {"_raw": "{oops"})]


@pytest.mark.parametrize("status", [400, 401, 403])
def test_client_errors_fail_fast_without_the_key(fake: tuple[FakeOpenAI, str], status: int) -> None:
    server, url = fake
    server.error(status, {"error": {"message": f"bad key {KEY}", "type": "auth"}})
    with pytest.raises(ModelError) as info:
        model(url).complete([], [], Stop(5))
    assert len(server.requests) == 1
    assert KEY not in str(info.value) and str(status) in str(info.value)


def test_context_length_is_named(fake: tuple[FakeOpenAI, str]) -> None:
    server, url = fake
    server.error(
        400,
        {"error": {"message": "too long", "type": "invalid", "code": "context_length_exceeded"}},
    )
    with pytest.raises(ModelError, match="longer than the model's context window"):
        model(url).complete([], [], Stop(5))
    assert len(server.requests) == 1


def test_an_interrupted_stream_stays_interrupted_not_a_model_error() -> None:
    """A stop seen inside the call's thread ends the call as Interrupted, as for Anthropic."""

    class Completions:
        def create(self, **kwargs: Any) -> Any:
            raise Interrupted

    class Client:
        chat = type("Chat", (), {"completions": Completions()})()

    with pytest.raises(Interrupted):
        OpenAIModel("fake", client=Client()).complete([], [], Stop(5))
