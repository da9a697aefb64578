"""Issue 12: real providers' SDKs inside a real worker, against fake APIs on loopback.

An Anthropic turn streams, calls a tool and ends, with its cache usage committed; and
with provider keys set on the worker, no key appears in any Redis key, any worker or
CLI output, or ``runner status --json`` (DESIGN guarantee 9), even when the API echoes
it back in an error.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.fake_models import FakeAnthropic, FakeOpenAI, serving, text, tool_use

SECRET = "sk-test-SECRET" + "k3y" * 8
ANT_SECRET = "sk-ant-test-SECRET" + "z9" * 10


@pytest.fixture
def anthropic_api() -> Iterator[FakeAnthropic]:
    with serving(FakeAnthropic()) as server:
        yield server


@pytest.fixture
def openai_api() -> Iterator[FakeOpenAI]:
    with serving(FakeOpenAI()) as server:
        yield server


def follow_json(cli: Any, run_id: str) -> tuple[int, list[dict[str, Any]], str]:
    done = cli("follow", run_id, "--json", timeout=90)
    return done.returncode, [json.loads(x) for x in done.stdout.splitlines() if x], done.stdout


@pytest.mark.slow
def test_an_anthropic_turn_streams_calls_a_tool_and_commits_its_cache_usage(
    cli: Any, env: dict[str, str], anthropic_api: FakeAnthropic
) -> None:
    anthropic_api.stream(
        text("Listing ", "the files."),
        tool_use("toolu_1", "shell", '{"command": ', '"echo hello-from-tool"}'),
        input_tokens=4,
        cache_creation_input_tokens=600,
    )
    anthropic_api.stream(text("It printed hello."), input_tokens=9, cache_read_input_tokens=600)
    env.update(RUNNER_ANTHROPIC_BASE_URL=anthropic_api.url, RUNNER_ANTHROPIC_API_KEY=ANT_SECRET)
    cli.worker("w1", env=env)
    run_id = cli.submit("--model", "anthropic:claude-fake", "say hello")
    code, events, _ = follow_json(cli, run_id)
    assert code == 0, events
    committed = [e for e in events if not e.get("ephemeral")]
    answers = [e for e in committed if e["type"] == "message" and e["role"] == "assistant"]
    assert [a["content"] for a in answers] == ["Listing the files.", "It printed hello."]
    assert answers[0]["tool_calls"][0]["arguments"] == {"command": "echo hello-from-tool"}
    usage = [e for e in committed if e["type"] == "usage"]
    assert usage[0]["cache_write_tokens"] == 600 and usage[0]["input_tokens"] == 604
    assert usage[1]["cache_read_tokens"] == 600
    # The tool's result went back as a tool_result block, and the prefix was cached.
    second = anthropic_api.requests[1]["messages"]
    result = second[-1]["content"][-1]
    assert result["type"] == "tool_result" and "hello-from-tool" in result["content"]
    assert result["cache_control"] == {"type": "ephemeral"}
    human = cli("follow", run_id)
    assert "shell: echo hello-from-tool" in human.stdout
    assert "cache" in human.stdout  # the usage suffix names the cache


def dump_everything(client: redis.Redis) -> str:
    """Every key of the server and its whole value, as text."""
    out: list[str] = []
    for key in client.scan_iter(count=500):
        kind = client.type(key)
        readers: dict[bytes, Any] = {
            b"string": client.get,
            b"hash": client.hgetall,
            b"list": lambda k: client.lrange(k, 0, -1),
            b"set": client.smembers,
            b"zset": lambda k: client.zrange(k, 0, -1, withscores=True),
            b"stream": client.xrange,
        }
        out.append(f"{key!r} {kind!r} {readers[kind](key)!r}")
    return "\n".join(out)


@pytest.mark.slow
def test_no_provider_key_reaches_redis_logs_or_status(
    cli: Any, env: dict[str, str], openai_api: FakeOpenAI, server: Any, tmp_path: Path
) -> None:
    # The tool prints its whole environment: were a key passed to tools, it would be here.
    command = json.dumps({"command": "env; echo done"})
    call = {"index": 0, "id": "call_1", "type": "function"}
    call["function"] = {"name": "shell", "arguments": command}  # type: ignore[assignment]
    openai_api.chat(content="Looking at the environment.", tool_calls=[call])
    openai_api.chat(content="Nothing to see.")
    # A second run's call is refused, the server echoing the key in its error.
    echo = {"error": {"message": f"Incorrect API key provided: {SECRET}", "type": "auth"}}
    openai_api.error(401, echo)
    env.update(
        RUNNER_OPENAI_BASE_URL=openai_api.url + "/v1",
        RUNNER_OPENAI_API_KEY=SECRET,
        OPENAI_API_KEY=SECRET,
        ANTHROPIC_API_KEY=ANT_SECRET,
    )
    worker = cli.worker("w1", env=env)
    ok = cli.submit("--model", "openai:gpt-fake", "look around")
    code, _, ok_out = follow_json(cli, ok)
    assert code == 0, ok_out
    refused = cli.submit("--model", "openai:gpt-fake", "again")
    code, _, refused_out = follow_json(cli, refused)
    assert code == 1, refused_out
    # The key was really in use: the fake API was sent it.
    assert openai_api.headers[0]["authorization"] == f"Bearer {SECRET}"
    assert "done" in json.dumps(openai_api.requests[1])  # the tool ran and reported

    outputs = [ok_out, refused_out]
    for command in (("status", refused, "--json"), ("transcript", ok, "--json"), ("list",)):
        done = cli(*command)
        outputs += [done.stdout, done.stderr]
    assert "401" in outputs[2]  # status explains the failure, without the key
    worker.stop()
    scanned = dump_everything(server.client(decode=False))
    logs = "\n".join(p.read_text(errors="replace") for p in tmp_path.rglob("*.log"))
    assert "stream" in scanned and logs.strip()
    for secret in (SECRET, ANT_SECRET, SECRET[8:24]):
        assert secret not in scanned
        assert secret not in logs
        assert all(secret not in text for text in outputs)
