"""Compaction end to end (issue 13, point 1): real workers, a fake OpenAI server, signals.

The fake server (tests/fake_models.py) plays an agent that reads one file step after step
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
from tests.fake_models import Answer, FakeChat, is_summary, serve
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
    """Two handoffs: during the second summarising call, then during step 25's call.

    Each time the model call the old worker abandoned is sent again by the new one,
    byte for byte (request bodies recorded by the fake server).
    """
    plain = agent(40)
    hangs = {"summary": threading.Event(), "answer": threading.Event()}
    blocked = {kind: threading.Event() for kind in hangs}
    counts = {"summary": 0, "step 25": 0}

    def respond(body: dict[str, Any]) -> Answer:
        kind = "summary" if is_summary(body) else "answer"
        answer = plain(body)
        key = "summary" if kind == "summary" else "step 25" if answer.get("id") == "c25" else ""
        if key:
            counts[key] += 1
        if (key, counts.get(key)) in (("summary", 2), ("step 25", 1)):
            blocked[kind].set()
            return {"hang": hangs[kind]}
        return answer

    chat = FakeChat(respond, window=WINDOW)
    abandoned: dict[str, int] = {}
    with serve(chat) as url:
        run_id = submit(cli, tmp_path, url, 40)
        for kind, name in (("summary", "w1"), ("answer", "w2")):
            worker = cli.worker(name)
            wait_for(blocked[kind].is_set, timeout=300, what=f"the {kind} call to hang")
            abandoned[kind] = len(chat.raw) - 1  # one worker at a time: the last request
            assert any(isinstance(e, CompactionEvent) for e in store.events(run_id))
            worker.signal(signal.SIGTERM)
            assert worker.wait(60) == 0, worker.output()[-2000:]
        cli.worker("w3")
        status = wait_for(lambda: ended(store, run_id), timeout=300, interval=0.2, what="the end")
        for hang in hangs.values():
            hang.set()
    assert status is Status.SUCCEEDED and chat.refused == 0
    for kind, at in abandoned.items():
        old = chat.raw[at]
        later = [r for r in chat.raw[at + 1 :] if is_summary(json.loads(r)) == (kind == "summary")]
        assert json.loads(later[0])["messages"] == json.loads(old)["messages"], kind
        assert later[0] == old, kind  # byte for byte: the same request


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
    env = {**cli.env, "RUNNER_CONTEXT_TOKENS": "3072"}  # the tools alone take ~1k
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
    assert compactions and all(c["window"] == 3072 for c in compactions)
    assert all(c["summary"].startswith("Summary of messages 1-") for c in compactions)
    assert store.get(run_id).status is Status.SUCCEEDED
