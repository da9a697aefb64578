"""Model providers: the scripted model and the OpenAI adapter (with a fake client)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest
from openai.types.chat import ChatCompletion

from runner.errors import BadInput, ModelError
from runner.script import Script, parse_script
from runner.settings import Settings
from workers.providers import (
    Interrupted,
    Reply,
    ToolCall,
    ToolSpec,
    Usage,
    load_model,
)
from workers.providers.openai_chat import OpenAIModel
from workers.providers.scripted import ScriptedModel
from workers.stop import Stop

REPO = Path(__file__).resolve().parents[2]

DESIGN_EXAMPLE = """{"steps": [
  {"content": "Looking around", "tool": "shell", "args": {"command": "ls"}, "sleep": 0.2},
  {"content": "Checking once more", "tool": "shell", "args": {"command": "echo ok"}},
  {"content": "All done."}
]}"""


def script(*steps: dict[str, Any]) -> Script:
    return parse_script(json.dumps({"steps": list(steps)}))


def transcript(assistant_turns: int) -> list[dict[str, Any]]:
    """A conversation with ``assistant_turns`` answered tool calls."""
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "go"},
    ]
    for i in range(assistant_turns):
        call = {"id": f"call_{i}", "type": "function", "function": {"name": "shell"}}
        messages.append({"role": "assistant", "content": "x", "tool_calls": [call]})
        messages.append({"role": "tool", "tool_call_id": f"call_{i}", "content": "ok"})
    return messages


# ---------------------------------------------------------------------------- scripted


def test_step_is_the_number_of_assistant_messages() -> None:
    model = ScriptedModel(parse_script(DESIGN_EXAMPLE.replace('"sleep": 0.2', '"sleep": 0')))
    stop = Stop(grace=5)
    first = model.complete(transcript(0), [], stop)
    assert first.content == "Looking around"
    assert first.tool_calls == [ToolCall("call_0", "shell", {"command": "ls"})]
    second = model.complete(transcript(1), [], stop)
    assert second.tool_calls == [ToolCall("call_1", "shell", {"command": "echo ok"})]
    final = model.complete(transcript(2), [], stop)
    assert (final.content, final.tool_calls) == ("All done.", [])
    for turns in (3, 7):
        past = model.complete(transcript(turns), [], stop)
        assert (past.content, past.tool_calls) == ("script finished", [])


def test_scripted_model_is_deterministic() -> None:
    model = ScriptedModel(script({"content": "hi", "tool": "read_file", "args": {"path": "a"}}))
    one = model.complete(transcript(0), [], Stop(grace=5))
    one.tool_calls[0].arguments["path"] = "changed by the caller"
    two = model.complete(transcript(0), [], Stop(grace=5))
    assert two == Reply("hi", [ToolCall("call_0", "read_file", {"path": "a"})], two.usage)


def test_scripted_usage_counts_characters() -> None:
    messages = [{"role": "user", "content": "x" * 40}, {"role": "assistant", "content": None}]
    reply = ScriptedModel(script({}, {"content": "y" * 9})).complete(messages, [], Stop(5))
    assert reply.usage == Usage(input_tokens=10, output_tokens=2)


def test_scripted_model_refuses_after_a_stop() -> None:
    stop = Stop(grace=5)
    stop.request()
    with pytest.raises(Interrupted):
        ScriptedModel(script({"content": "a"})).complete([], [], stop)


def test_scripted_sleep_is_interrupted_by_a_stop() -> None:
    stop = Stop(grace=5)
    timer = threading.Timer(0.2, stop.request)
    timer.start()
    started = time.monotonic()
    with pytest.raises(Interrupted):
        ScriptedModel(script({"content": "slow", "sleep": 60})).complete([], [], stop)
    timer.join()
    assert time.monotonic() - started < 5


def test_scripted_short_sleep_answers() -> None:
    reply = ScriptedModel(script({"content": "a", "sleep": 0.05})).complete([], [], Stop(5))
    assert reply.content == "a"


def test_crash_kills_the_process_on_the_spot() -> None:
    code = (
        "from runner.script import parse_script\n"
        "from workers.providers.scripted import ScriptedModel\n"
        "from workers.stop import Stop\n"
        'm = ScriptedModel(parse_script(\'{"steps": [{"crash": true, "sleep": 60}]}\'))\n'
        "m.complete([], [], Stop(5))\n"
        "print('survived')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert "survived" not in proc.stdout


# ---------------------------------------------------------------------------- parse_script


def test_design_example_parses() -> None:
    steps = parse_script(DESIGN_EXAMPLE).steps
    assert [s.tool for s in steps] == ["shell", "shell", None]
    assert steps[0].sleep == 0.2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("not json", "bad script: Invalid JSON"),
        ("{}", "bad script: steps: Field required"),
        ('{"steps": 5}', "bad script: steps: "),
        ('{"steps": [{"sleep": -1}]}', "bad script: steps[0].sleep: "),
        ('{"steps": [{}, {"sleep": 4000}]}', "bad script: steps[1].sleep: "),
        ('{"steps": [{"tool": 3, "typo": 1}]}', "bad script: steps[0].tool: "),
        ('{"steps": [], "extra": 1}', "bad script: extra: Extra inputs are not permitted"),
        ('{"steps": [{"args": []}]}', "bad script: steps[0].args: "),
    ],
)
def test_parse_errors_are_one_line(text: str, expected: str) -> None:
    with pytest.raises(BadInput) as info:
        parse_script(text)
    message = str(info.value)
    assert message.startswith(expected)
    assert "\n" not in message
    assert len(message) < 200


# ---------------------------------------------------------------------------- load_model


def test_load_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("RUNNER_OPENAI_BASE_URL", "http://llm.invalid/v1")
    assert isinstance(load_model("scripted", script({}), Settings()), ScriptedModel)
    model = load_model("openai:gpt-test", None, Settings())  # needs no key until it is called
    assert isinstance(model, OpenAIModel)
    assert (model.model, model.base_url) == ("gpt-test", "http://llm.invalid/v1")


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("scripted", "needs a script"),
        ("openai:", "unknown model 'openai:'; known: scripted, openai:<model>"),
        ("claude", "unknown model 'claude'; known: scripted, openai:<model>"),
    ],
)
def test_load_model_refuses(spec: str, expected: str) -> None:
    with pytest.raises(BadInput, match=expected):
        load_model(spec, None, Settings())


# ---------------------------------------------------------------------------- openai

REQUEST = httpx2.Request("POST", "http://llm.invalid/v1/chat/completions")


def completion(message: dict[str, Any], usage: dict[str, int] | None = None) -> ChatCompletion:
    choice = {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", **message}}
    body: dict[str, Any] = {
        "id": "cmpl",
        "object": "chat.completion",
        "created": 0,
        "model": "gpt-test",
        "choices": [choice],
    }
    if usage:
        body["usage"] = {**usage, "total_tokens": sum(usage.values())}
    return ChatCompletion.model_validate(body)


def status_error(cls: type[openai.APIStatusError], status: int) -> openai.APIStatusError:
    return cls("nope", response=httpx2.Response(status, request=REQUEST), body=None)


class FakeCompletions:
    """Answers ``create`` from a queue of results and exceptions, recording each call."""

    def __init__(self, *outcomes: Any) -> None:
        self.outcomes = list(outcomes)
        self.calls: list[dict[str, Any]] = []

    def create(self, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome() if callable(outcome) else outcome


class FakeClient:
    def __init__(self, completions: FakeCompletions) -> None:
        self.chat = self
        self.completions = completions


def openai_model(*outcomes: Any) -> tuple[OpenAIModel, FakeCompletions]:
    fake = FakeCompletions(*outcomes)
    return OpenAIModel("gpt-test", client=FakeClient(fake), backoff=0), fake


def test_openai_reply_with_tool_calls_and_usage() -> None:
    calls = [
        {
            "id": "c1",
            "type": "function",
            "function": {"name": "shell", "arguments": '{"command": "ls"}'},
        },
        {"id": "c2", "type": "function", "function": {"name": "list_dir", "arguments": ""}},
        {"id": "c3", "type": "function", "function": {"name": "shell", "arguments": "{oops"}},
    ]
    answer = completion(
        {"content": None, "tool_calls": calls}, {"prompt_tokens": 7, "completion_tokens": 3}
    )
    model, fake = openai_model(answer)
    schema = {"type": "object", "properties": {}}
    tools = [ToolSpec("shell", "Run a command", schema)]
    reply = model.complete([{"role": "user", "content": "hi"}], tools, Stop(5))
    assert reply == Reply(
        "",
        [
            ToolCall("c1", "shell", {"command": "ls"}),
            ToolCall("c2", "list_dir", {}),
            ToolCall("c3", "shell", {"_raw": "{oops"}),
        ],
        Usage(7, 3),
    )
    wire = [
        {
            "type": "function",
            "function": {"name": "shell", "description": "Run a command", "parameters": schema},
        }
    ]
    assert fake.calls == [
        {
            "model": "gpt-test",
            "messages": [{"role": "user", "content": "hi"}],
            "stream": True,
            "stream_options": {"include_usage": True},
            "tools": wire,
        }
    ]


def test_openai_final_answer_without_tools() -> None:
    model, fake = openai_model(completion({"content": "done"}))
    assert model.complete([], [], Stop(5)) == Reply("done", [], None)
    assert "tools" not in fake.calls[0]


def test_openai_transient_errors_are_retried() -> None:
    model, fake = openai_model(
        openai.APIConnectionError(request=REQUEST),
        openai.APITimeoutError(REQUEST),
        status_error(openai.RateLimitError, 429),
        completion({"content": "finally"}),
    )
    assert model.complete([], [], Stop(5)).content == "finally"
    assert len(fake.calls) == 4


def test_openai_gives_up_after_a_few_attempts() -> None:
    model, fake = openai_model(*[status_error(openai.InternalServerError, 500)] * 10)
    with pytest.raises(ModelError, match="openai: nope"):
        model.complete([], [], Stop(5))
    assert len(fake.calls) == model.attempts


def test_openai_other_errors_are_not_retried() -> None:
    model, fake = openai_model(status_error(openai.BadRequestError, 400), completion({}))
    with pytest.raises(ModelError):
        model.complete([], [], Stop(5))
    assert len(fake.calls) == 1


def test_openai_call_is_abandoned_on_stop() -> None:
    started, release = threading.Event(), threading.Event()

    def slow() -> ChatCompletion:
        started.set()
        release.wait(30)
        return completion({"content": "too late"})

    model, _fake = openai_model(slow)
    stop = Stop(grace=5)

    def stop_once_called() -> None:
        if started.wait(5):
            stop.request()

    thread = threading.Thread(target=stop_once_called)
    thread.start()
    t0 = time.monotonic()
    try:
        with pytest.raises(Interrupted):
            model.complete([], [], stop)
        assert time.monotonic() - t0 < 2
    finally:
        release.set()
        thread.join()


def test_openai_without_a_key_is_a_model_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_ADMIN_KEY", raising=False)
    with pytest.raises(ModelError, match="openai: "):
        OpenAIModel("gpt-test").complete([], [], Stop(5))


def test_openai_error_echoing_the_key_is_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    key = "sk-test-" + "A1b2C3d4" * 4
    monkeypatch.setenv("OPENAI_API_KEY", key)
    echo = openai.AuthenticationError(
        f"Error code: 401 - Incorrect API key provided: {key}. You can find your API key...",
        response=httpx2.Response(401, request=REQUEST),
        body=None,
    )
    model, _fake = openai_model(echo)
    with pytest.raises(ModelError) as info:
        model.complete([], [], Stop(5))
    message = str(info.value)
    assert message.startswith("openai: Error code: 401 - Incorrect API key provided: ")
    assert key not in message
    assert "A1b2C3d4" not in message
    assert "[redacted]" in message


def test_a_missing_extra_fails_the_run_with_the_install_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As on a worker installed without the extra: the SDK cannot be imported.
    monkeypatch.setitem(sys.modules, "openai", None)
    monkeypatch.delitem(sys.modules, "workers.providers.openai_chat", raising=False)
    with pytest.raises(BadInput) as info:
        load_model("openai:gpt-test", None, Settings())
    assert str(info.value).endswith("; pip install 'runner[openai]'")
    # The other providers still load on that worker.
    assert isinstance(load_model("scripted", script({}), Settings()), ScriptedModel)


def test_openai_settings_come_before_the_sdk_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://sdk.invalid/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-the-sdk-variable")
    from_sdk = load_model("openai:gpt-test", None, Settings())
    assert isinstance(from_sdk, OpenAIModel)
    client = from_sdk._get_client()
    assert (str(client.base_url), client.api_key) == (
        "http://sdk.invalid/v1/",
        "sk-from-the-sdk-variable",
    )
    monkeypatch.setenv("RUNNER_OPENAI_BASE_URL", "http://runner.invalid/v1")
    monkeypatch.setenv("RUNNER_OPENAI_API_KEY", "sk-from-runner-settings")
    ours = load_model("openai:gpt-test", None, Settings())
    assert isinstance(ours, OpenAIModel)
    client = ours._get_client()
    assert (str(client.base_url), client.api_key) == (
        "http://runner.invalid/v1/",
        "sk-from-runner-settings",
    )


def test_every_known_provider_has_an_implementation() -> None:
    from runner.providers import KNOWN_SPECS, PROVIDERS
    from workers.providers.registry import FACTORIES

    assert set(FACTORIES) == set(PROVIDERS)
    assert KNOWN_SPECS == ("scripted", "openai:<model>")
    assert PROVIDERS["openai"].install == "pip install 'runner[openai]'"
