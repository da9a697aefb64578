"""Issue 14, points 1, 3, 4: sessions, fork and purge with real workers and the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from runner.events import MessageEvent, StatusEvent
from runner.store import RunStore
from tests.conftest import Cli, Server
from tests.helpers import wait_for, write_script
from tests.integration.test_openai_stream import FakeOpenAI, chunk, fake  # noqa: F401

pytestmark = pytest.mark.slow


def ended(store: RunStore, run_id: str, timeout: float = 60) -> str:
    def done() -> str | None:
        record = store.get(run_id)
        return record.status.value if record.terminal else None

    return wait_for(done, timeout, 0.05, what=f"{run_id} to end")


def transcript(cli: Cli, run_id: str) -> list[dict[str, Any]]:
    done = cli("transcript", run_id, "--json")
    assert done.returncode == 0, done.stderr
    messages: list[dict[str, Any]] = json.loads(done.stdout)
    return messages


def shell(content: str, command: str, sleep: float = 0.0) -> dict[str, Any]:
    return {"content": content, "tool": "shell", "args": {"command": command}, "sleep": sleep}


def test_three_turns_continue_transcript_and_workspace(
    cli: Cli, store: RunStore, tmp_path: Path
) -> None:
    cli.worker("w")
    turns = [
        [shell("writing", "echo one > a.txt"), {"content": "wrote a.txt"}],
        [shell("appending", "echo two >> a.txt && cat a.txt"), {"content": "appended"}],
        [shell("reading", "cat a.txt"), {"content": "read it"}],
    ]
    ids = []
    for i, steps in enumerate(turns):
        script = write_script(tmp_path / f"t{i}.json", steps)
        run_id = cli.submit("--session", "chat", "--script", str(script), f"turn {i + 1}")
        assert ended(store, run_id) == "succeeded", cli("follow", run_id).stdout
        ids.append(run_id)
    third = transcript(cli, ids[2])
    users = [m["content"] for m in third if m["role"] == "user"]
    assert users == ["turn 1", "turn 2", "turn 3"], "earlier turns first"
    # Each turn's script starts at its own step 0: the history is not counted.
    assistants = [m["content"] for m in third if m["role"] == "assistant"]
    assert assistants == ["writing", "wrote a.txt", "appending", "appended", "reading", "read it"]
    # The workspace followed the session: turn 3 reads what turns 1 and 2 wrote.
    assert third[-2]["role"] == "tool" and "one\ntwo" in third[-2]["content"]
    listed = cli("sessions", "--json")
    info = json.loads(listed.stdout.splitlines()[0])
    assert (info["name"], info["turns"], info["last_turn"]) == ("chat", 3, ids[2])
    assert info["last_status"] == "succeeded" and not info["expired"]
    # send to an ended turn starts the next one.
    sent = cli("send", ids[2], "turn 4")
    assert sent.returncode == 0, sent.stderr
    fourth = sent.stdout.strip()
    assert ended(store, fourth) == "succeeded"
    assert [m["content"] for m in transcript(cli, fourth) if m["role"] == "user"][-2:] == [
        "turn 3",
        "turn 4",
    ]


def test_openai_turn_three_sees_turns_one_and_two(
    cli: Cli,
    store: RunStore,
    env: dict[str, str],
    fake: tuple[FakeOpenAI, str],  # noqa: F811
) -> None:
    server, url = fake
    for answer in ("first answer", "second answer", "third answer"):
        server.stream(chunk({"role": "assistant", "content": answer}))
    cli.worker("w", env={**env, "OPENAI_BASE_URL": url, "OPENAI_API_KEY": "sk-fake-" + "k" * 30})
    ids = []
    for i in range(3):
        own = ["--system", "answer briefly"] if i == 0 else []  # later turns take it over
        run_id = cli.submit("--session", "ai", *own, "--model", "openai:fake", f"question {i + 1}")
        assert ended(store, run_id) == "succeeded", cli("follow", run_id).stdout
        ids.append(run_id)
    sent = [(m["role"], m["content"]) for m in server.requests[2]["messages"]]
    assert sent[0] == ("system", "answer briefly")
    assert sent[1:] == [
        ("user", "question 1"),
        ("assistant", "first answer"),
        ("user", "question 2"),
        ("assistant", "second answer"),
        ("user", "question 3"),
    ]


def test_busy_session_rejects_or_queues(cli: Cli, store: RunStore, tmp_path: Path) -> None:
    slow = write_script(tmp_path / "slow.json", [{"content": "thinking", "sleep": 60}])
    quick = write_script(tmp_path / "quick.json", [{"content": "next"}])
    cli.worker("w")
    first = cli.submit("--session", "busy", "--script", str(slow), "one")
    wait_for(lambda: store.get(first).status.value == "running", 30, what="turn 1 to run")
    rejected = cli(
        "submit", "--session", "busy", "--if-busy", "reject", "--script", str(quick), "x"
    )
    assert rejected.returncode == 2
    assert rejected.stderr.strip() == (
        f"error: session busy is busy: turn {first} is running (--if-busy queue waits for it)"
    )
    second = cli.submit("--session", "busy", "--script", str(quick), "two")
    assert store.get(second).status.value == "queued"
    said = store.events(second)[0]
    assert isinstance(said, StatusEvent) and said.reason
    assert said.reason.endswith(f"waits for turn {first} of its session to end")
    assert not store.redis.lpos("rq:queue:default", second), "held: in no queue"
    # The worker is idle enough to take it, but the sweeper leaves a held turn alone.
    assert cli("sweep").returncode == 0
    assert store.get(second).status.value == "queued"
    # Ending turn 1 (a cancel here) releases turn 2, which continues it.
    assert cli("cancel", first).returncode == 0
    assert ended(store, first) == "cancelled"
    assert ended(store, second) == "succeeded"
    users = [m["content"] for m in transcript(cli, second) if m["role"] == "user"]
    assert users == ["one", "two"]


def test_fork_at_a_tool_call_boundary(cli: Cli, store: RunStore, tmp_path: Path) -> None:
    steps = [
        shell("first file", "echo a > a.txt"),
        shell("second file", "echo b > b.txt"),
        {"content": "done"},
    ]
    source = cli.submit("--script", str(write_script(tmp_path / "s.json", steps)), "make files")
    worker = cli.worker("w")
    assert ended(store, source) == "succeeded"
    worker.stop()
    # user, assistant(call), tool, assistant(call), tool, assistant: 4 splits the 2nd call.
    split = cli("fork", source, "--at", "4")
    assert split.returncode == 0, split.stderr
    assert "forked at 3" in split.stderr
    fork = split.stdout.strip()
    assert [m["content"] for m in transcript(cli, fork)] == [
        m["content"] for m in transcript(cli, source)[:3]
    ]
    pulled = tmp_path / "pulled"
    assert cli("pull", fork, str(pulled)).returncode == 0
    assert sorted(p.name for p in pulled.iterdir()) == ["a.txt"], "the workspace as it was then"
    assert store.get(fork).status.value == "queued"
    cli.worker("w2")
    assert ended(store, fork) == "succeeded"
    # It went on from the cut: the script's second step, then its answer.
    assistants = [m["content"] for m in transcript(cli, fork) if m["role"] == "assistant"]
    assert assistants == ["first file", "second file", "done"]
    # A run without a session becomes the first turn of one named after it.
    sent = cli("send", fork, "one more")
    assert sent.returncode == 0, sent.stderr
    assert f"session {fork} continues in" in sent.stderr
    nxt = sent.stdout.strip()
    assert store.get(nxt).session == fork == store.get(fork).session
    assert ended(store, nxt) == "succeeded"
    users = [m["content"] for m in transcript(cli, nxt) if m["role"] == "user"]
    assert users == ["make files", "one more"]


def test_purge_leaves_no_key_or_blob(
    cli: Cli, store: RunStore, server: Server, env: dict[str, str], tmp_path: Path
) -> None:
    blobs = tmp_path / "blobs"
    files = {**env, "RUNNER_WORKSPACE_STORE": f"file://{blobs}"}
    script = write_script(tmp_path / "s.json", [shell("w", "echo hi > f.txt"), {"content": "ok"}])
    cli.worker("w", env=files)
    run_id = cli("submit", "--script", str(script), "write", env=files).stdout.strip()
    other = cli("submit", "--script", str(script), "keep me", env=files).stdout.strip()
    assert ended(store, run_id) == "succeeded" and ended(store, other) == "succeeded"
    assert any(run_id in str(p) for p in blobs.rglob("*")), "blobs went to the directory"
    done = cli("purge", run_id, env=files)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("purged 1 run (")
    raw = server.client()
    names = list(raw.scan_iter("*"))
    assert not [k for k in names if run_id in k]
    for key in names:
        kind = raw.type(key)
        if kind == "zset":
            assert raw.zscore(key, run_id) is None, key
        elif kind == "set":
            assert not raw.sismember(key, run_id), key
    assert not [p for p in blobs.rglob("*") if run_id in str(p)]
    assert [k for k in names if other in k], "the other run is untouched"
    again = cli("purge", run_id)
    assert (again.returncode, again.stderr.strip()) == (2, f"error: no such run: {run_id}")
    older = cli("purge", "--older-than", "0s", "--json", env=files)
    assert json.loads(older.stdout)["runs"] == [other]


# Every scripted answer costs $1: 40 characters are 10 output tokens at $100,000 per 1M.
PRICES = {"scripted": {"input": 0, "output": 100_000}}


def dollar(text: str, tool: str = "", **args: str) -> dict[str, Any]:
    """A scripted step whose answer costs exactly $1 (with PRICES), calling ``tool``."""
    step: dict[str, Any] = {"content": text.ljust(40, ".")}
    return {**step, "tool": tool, "args": args} if tool else step


def wait_status(store: RunStore, run_id: str, status: str, timeout: float = 60) -> None:
    wait_for(lambda: store.get(run_id).status.value == status, timeout, what=f"{run_id} {status}")


def said(store: RunStore, run_id: str) -> list[str]:
    return [
        e.content.rstrip(".")
        for e in store.events(run_id)
        if isinstance(e, MessageEvent) and e.role == "assistant"
    ]


def forks_carry(cli: Cli, store: RunStore, parked_at_limit: str, raised: str) -> None:
    """A fork is the same turn taken from a cut: it carries what was spent before the
    cut, so it parks where the source did (one new answer, not two)."""
    forked = cli("fork", parked_at_limit, "--at", "3")  # user, s0, its result
    assert forked.returncode == 0, forked.stderr
    fork = forked.stdout.strip()
    wait_status(store, fork, "waiting")
    record = store.get(fork)
    assert (record.waiting_for, record.cost, said(store, fork)) == ("cost", 2.0, ["s0", "s1"])
    assert (record.max_cost, record.max_tool_calls, record.approve) == (2.0, 20, "write_file")
    assert store.redis.get(store.keys.system(fork)) == "be brief"
    # ... and the limits as they are now: the raised turn 3 forks with its $12.
    late = cli("fork", raised, "--at", "5").stdout.strip()  # user, s0, result, s1, result
    assert ended(store, late) == "succeeded"
    assert (store.get(late).max_cost, store.get(late).cost, said(store, late)) == (
        12.0,
        4.0,
        ["s0", "s1", "s2", "f"],
    )


def test_turns_and_forks_carry_limits_approvals_and_prompt(
    cli: Cli, store: RunStore, env: dict[str, str], tmp_path: Path
) -> None:
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps(PRICES))
    cli.env["RUNNER_PRICES"] = str(prices)
    cli.worker("w1")
    one = write_script(
        tmp_path / "one.json", [dollar("a0", "shell", command="echo 0"), dollar("f")]
    )
    asks = write_script(
        tmp_path / "asks.json", [dollar("w0", "write_file", path="x", content="1"), dollar("f")]
    )
    three = [dollar(f"s{i}", "shell", command=f"echo {i}") for i in range(3)] + [dollar("f")]
    long = write_script(tmp_path / "long.json", three)
    given = ["--max-cost", "2", "--max-tool-calls", "20", "--max-steps", "50"]
    given += ["--max-tokens", "100000", "--max-time", "1h", "--context-tokens", "6000"]
    first = cli.submit(
        "--session", "c", *given, "--approve", "write_file", "--system", "be brief",
        "--script", str(one), "turn 1",
    )  # fmt: skip
    assert ended(store, first) == "succeeded"
    assert store.get(first).cost == 2.0  # $2 of a $2 limit: at the limit, not over it

    # Turn 2 gives none of its own: the limits, the approval list, the window and the
    # prompt come from turn 1. Spending starts again: with turn 1's $2 counted it could
    # not make a single model call.
    second = cli.submit("--session", "c", "--script", str(asks), "turn 2")
    parked = cli("follow", second, timeout=60)
    assert parked.returncode == 5, parked.stdout + parked.stderr
    assert "needs approval: write_file" in parked.stdout, "turn 1's --approve came along"
    record = store.get(second)
    assert (record.max_cost, record.max_tool_calls, record.max_steps) == (2.0, 20, 50)
    assert (record.max_tokens, record.max_time, record.approve) == (100000, 3600.0, "write_file")
    assert store.redis.hget(store.keys.record(second), "context_tokens") == "6000"
    assert store.redis.get(store.keys.system(second)) == "be brief"
    assert cli("approve", second).returncode == 0
    assert ended(store, second) == "succeeded" and store.get(second).cost == 2.0

    # Turn 3 meets turn 1's $2 limit on its own spending, is raised, and finishes.
    third = cli.submit("--session", "c", "--script", str(long), "turn 3")
    wait_status(store, third, "waiting")
    assert (store.get(third).waiting_for, said(store, third)) == ("cost", ["s0", "s1"])
    assert cli("resume", third, "--add-cost", "10").returncode == 0
    assert ended(store, third) == "succeeded"
    assert (store.get(third).max_cost, store.get(third).cost) == (12.0, 4.0)

    # send starts turn 4 with what the conversation was given ($2), not turn 3's raise.
    sent = cli("send", third, "turn 4")
    assert sent.returncode == 0, sent.stderr
    fourth = sent.stdout.strip()
    wait_status(store, fourth, "waiting")
    assert (store.get(fourth).max_cost, said(store, fourth)) == (2.0, ["s0", "s1"])

    forks_carry(cli, store, parked_at_limit=fourth, raised=third)

    # A submit that gives its own limit keeps it; the rest still come along.
    assert cli("cancel", fourth).returncode == 0
    fifth = cli.submit("--session", "c", "--max-cost", "5", "--script", str(long), "turn 5")
    assert ended(store, fifth) == "succeeded"
    record = store.get(fifth)
    assert (record.max_cost, record.cost, record.max_tool_calls) == (5.0, 4.0, 20)
