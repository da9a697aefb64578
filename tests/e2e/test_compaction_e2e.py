"""Compaction end to end (issue 13, point 1): real workers, a fake OpenAI server, signals.

The fake server (tests/fake_chat.py) plays an agent that reads one file step after step
and refuses any request over its 8k-token window, as OpenAI would. A turn far longer
than the window succeeds only by compacting; after a handoff the new worker must send
the model byte for byte what the old one was sending.
"""

from __future__ import annotations

import json
import re
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from runner.events import CompactionEvent, MessageEvent, Status
from runner.prompts import DEFAULT_SYSTEM, SUMMARY_HEADER
from runner.store import RunStore
from tests.fake_chat import Answer, FakeChat, is_summary, serve
from tests.helpers import wait_for

if TYPE_CHECKING:
    from tests.conftest import Cli

WINDOW = 8192
LINE = "The quick brown fox jumps over the lazy dog; its fields are many and wide.\n"
STEP = re.compile(r"Step (\d+)")


def agent(steps: int) -> Any:
    """The fake model: step k reads data.txt, then k + 1; a summary names the last step."""

    def respond(body: dict[str, Any]) -> Answer:
        messages = body["messages"]
        if is_summary(body):
            seen = STEP.findall(messages[1]["content"])
            return {"content": f"The agent read data.txt at every step up to {seen[-1]}."}
        said = [m["content"] for m in messages if m["role"] == "assistant"]
        step = int(STEP.match(said[-1]).group(1)) + 1 if said else 0  # type: ignore[union-attr]
        if step >= steps:
            return {"content": "All done."}
        args = {"path": "data.txt"}
        return {"content": f"Step {step}", "tool": "read_file", "args": args, "id": f"c{step}"}

    return respond


def submit(cli: Cli, tmp_path: Path, url: str, steps: int, *extra: str) -> str:
    workspace = tmp_path / "start"
    workspace.mkdir(exist_ok=True)
    (workspace / "data.txt").write_text(LINE * 16)  # about 1.2 kB a read
    cli.env.update(RUNNER_OPENAI_BASE_URL=url, RUNNER_OPENAI_API_KEY="sk-test-compact")
    return cli.submit(
        "--model", "openai:fake-model", "--context-tokens", str(WINDOW),
        "--max-steps", str(steps + 5), "--workspace", str(workspace), *extra, "read it all",
    )  # fmt: skip


def ended(store: RunStore, run_id: str) -> Status | None:
    record = store.get(run_id)
    return record.status if record.terminal else None


@pytest.mark.slow
def test_a_500_step_turn_fits_an_8k_window_by_compacting(
    cli: Cli, store: RunStore, tmp_path: Path
) -> None:
    chat = FakeChat(agent(500), window=WINDOW)
    with serve(chat) as url:
        run_id = submit(cli, tmp_path, url, 500)
        worker = cli.worker("w1")
        status = wait_for(lambda: ended(store, run_id), timeout=900, interval=0.5, what="the end")
    assert status is Status.SUCCEEDED, (store.get(run_id), worker.output()[-3000:])
    assert chat.refused == 0
    events = store.events(run_id)
    said = [e.content for e in events if isinstance(e, MessageEvent) and e.role == "assistant"]
    assert said == [f"Step {i}" for i in range(500)] + ["All done."]  # each step once
    compactions = [e for e in events if isinstance(e, CompactionEvent)]
    assert len(compactions) >= 20 and all(c.summary for c in compactions)
    # `runner transcript` still has every message; only the model's view was compacted.
    shown = json.loads(cli("transcript", run_id, "--json").stdout)
    assert len(shown) == 1 + 2 * 500 + 1
    last = json.loads(chat.raw[-1])["messages"]
    assert last[0] == {"role": "system", "content": DEFAULT_SYSTEM}
    assert last[1]["content"].startswith(SUMMARY_HEADER) and len(last) < 40
    human = cli("follow", run_id).stdout
    assert "compaction: " in human and "messages summarised" in human


def test_a_handoff_after_a_compaction_sends_the_model_the_same_bytes(
    cli: Cli, store: RunStore, tmp_path: Path
) -> None:
    hang = threading.Event()
    blocked = threading.Event()
    plain = agent(40)
    seen: dict[int, int] = {}

    def respond(body: dict[str, Any]) -> Answer:
        answer = plain(body)
        step = int(answer["id"][1:]) if "id" in answer else -1
        seen[step] = seen.get(step, 0) + 1
        # The first request for step 25 (after a few compactions) hangs until the handoff.
        if step == 25 and seen[step] == 1:
            blocked.set()
            return {"hang": hang}
        return answer

    chat = FakeChat(respond, window=WINDOW)
    with serve(chat) as url:
        run_id = submit(cli, tmp_path, url, 40)
        first = cli.worker("w1")
        wait_for(blocked.is_set, timeout=300, what="the model call of step 25")
        before = [e for e in store.events(run_id) if isinstance(e, CompactionEvent)]
        assert before, "a compaction happened before the handoff"
        old = chat.raw[-1]
        first.signal(signal.SIGTERM)
        assert first.wait(60) == 0
        cli.worker("w2")
        status = wait_for(lambda: ended(store, run_id), timeout=300, interval=0.2, what="the end")
        hang.set()
    assert status is Status.SUCCEEDED and chat.refused == 0
    # The requests for step 25: the old worker's (abandoned) and the new one's.
    asked = [raw for raw in chat.raw if not is_summary(json.loads(raw)) and last_said(raw) == 24]
    assert len(asked) == 2 and asked[0] == old
    assert json.loads(asked[1])["messages"] == json.loads(old)["messages"]
    assert asked[1] == old  # byte for byte: the same request


def last_said(raw: bytes) -> int | None:
    said = [m["content"] for m in json.loads(raw)["messages"] if m["role"] == "assistant"]
    found = STEP.match(said[-1]) if said else None
    return int(found.group(1)) if found else None


def test_system_prompt_from_a_file_reaches_the_model_and_bad_input_is_one_line(
    cli: Cli, store: RunStore, tmp_path: Path
) -> None:
    prompt = tmp_path / "system.txt"
    prompt.write_text("You are a careful release engineer.\nNever push on Fridays.")
    chat = FakeChat(agent(1), window=WINDOW)
    with serve(chat) as url:
        with_file = submit(cli, tmp_path, url, 1, "--system", f"@{prompt}")
        default = submit(cli, tmp_path, url, 1)
        cli.worker("w1")
        for run_id in (with_file, default):
            wait_for(lambda r=run_id: ended(store, r), timeout=120, what="the turns")  # type: ignore[misc]
    firsts = [json.loads(raw)["messages"][0] for raw in chat.raw]
    assert {"role": "system", "content": prompt.read_text()} in firsts
    assert {"role": "system", "content": DEFAULT_SYSTEM} in firsts
    assert store.redis.get(store.keys.system(with_file)) == prompt.read_text()
    # The prompt is stored with the run: its key expires with the others.
    assert 0 < store.redis.pttl(store.keys.system(with_file)) <= store.retention_ms

    script = tmp_path / "script.json"
    script.write_text('{"steps": [{"content": "ok"}]}')
    runs = f"{store.keys.prefix}:run:*"
    before = set(store.redis.scan_iter(runs))
    for args, message in [
        (("--context-tokens", "5"), "5 is not in the range 1024<=x<=10000000"),
        (("--system", f"@{tmp_path / 'missing.txt'}"), "cannot read system prompt file"),
        (("--system", " "), "error: the system prompt is empty"),
    ]:
        done = cli("submit", "--model", "scripted", "--script", str(script), *args, "go")
        assert done.returncode == 2, done.stderr
        assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1
        assert "Traceback" not in done.stderr
    assert set(store.redis.scan_iter(runs)) == before  # no key of any run written


def test_the_scripted_model_compacts_on_runner_context_tokens(
    cli: Cli, store: RunStore, tmp_path: Path
) -> None:
    steps = [
        {
            "content": f"note {i}",
            "tool": "write_file",
            "args": {"path": "n.txt", "content": LINE * 8},
        }
        for i in range(30)
    ]
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"steps": [*steps, {"content": "All done."}]}))
    env = {**cli.env, "RUNNER_CONTEXT_TOKENS": "2048"}
    done = cli(
        "submit",
        "--model",
        "scripted",
        "--script",
        str(script),
        "--max-steps",
        "40",
        "write",
        env=env,
    )
    run_id = done.stdout.strip()
    cli.worker("w1")
    wait_for(lambda: ended(store, run_id), timeout=120, what="the turn")
    events = [json.loads(line) for line in cli("follow", run_id, "--json").stdout.splitlines()]
    said = [e["content"] for e in events if e["type"] == "message" and e["role"] == "assistant"]
    assert said == [f"note {i}" for i in range(30)] + ["All done."]  # no summary is a step
    compactions = [e for e in events if e["type"] == "compaction"]
    assert compactions and all(c["window"] == 2048 for c in compactions)
    assert all(c["summary"].startswith("Summary of messages 1-") for c in compactions)
    assert store.get(run_id).status is Status.SUCCEEDED
