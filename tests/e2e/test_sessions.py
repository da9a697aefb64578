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


def first_message(store: RunStore, run_id: str) -> str:
    return next(e.content for e in store.events(run_id) if isinstance(e, MessageEvent))


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
        run_id = cli.submit("--session", "ai", "--model", "openai:fake", f"question {i + 1}")
        assert ended(store, run_id) == "succeeded", cli("follow", run_id).stdout
        ids.append(run_id)
    sent = [(m["role"], m["content"]) for m in server.requests[2]["messages"]]
    assert [m for m in sent if m[0] != "system"] == [
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


def test_commands_against_each_state(
    cli: Cli, store: RunStore, env: dict[str, str], tmp_path: Path
) -> None:
    quick = str(write_script(tmp_path / "quick.json", [{"content": "done"}]))
    slow = str(write_script(tmp_path / "slow.json", [{"content": "thinking", "sleep": 900}]))
    crash = str(write_script(tmp_path / "crash.json", [{"content": "x", "crash": True}]))
    cli.worker("w", env={**env, "RUNNER_MAX_DIRTY_RESTARTS": "0"})
    states = {"succeeded": cli.submit("--script", quick, "ended")}
    assert ended(store, states["succeeded"]) == "succeeded"
    states["suspended"] = cli.submit("--script", crash, "crashes")
    wait_for(lambda: store.get(states["suspended"]).status.value == "suspended", 60)
    states["running"] = cli.submit("--session", "live", "--script", slow, "runs")
    wait_for(lambda: store.get(states["running"]).status.value == "running", 60)
    states["queued"] = cli.submit("--queue", "idle", "--script", quick, "waits in a queue")
    # Nothing on this branch parks a run as waiting (approvals do): set the status by hand.
    states["waiting"] = cli.submit("--queue", "idle", "--script", quick, "parked")
    store.redis.hset(store.keys.record(states["waiting"]), "status", "waiting")
    store.redis.srem(store.keys.queued, states["waiting"])
    unknown = "r" + "0" * 18
    for status, run_id in states.items():
        assert store.get(run_id).status.value == status
        forked = cli("fork", run_id, "--at", "1")
        assert forked.returncode == 0, (status, forked.stderr)
        assert first_message(store, forked.stdout.strip()) == first_message(store, run_id)
        purged = cli("purge", run_id)
        if status == "succeeded":
            assert purged.returncode == 0, purged.stderr
        else:
            assert purged.returncode == 2
            assert purged.stderr.strip() == (
                f"error: run {run_id} is {status}, not ended: cancel it first "
                f"(runner cancel {run_id})"
            )
            assert store.get(run_id).status.value == status, "nothing changed"
    for args in (("fork", unknown, "--at", "1"), ("purge", unknown)):
        missing = cli(*args)
        assert (missing.returncode, missing.stderr.strip()) == (2, f"error: no such run: {unknown}")
    bad = cli("purge", "--older-than", "soon")
    assert bad.returncode == 2 and bad.stderr.startswith("error: not an age: 'soon'")
    # A session whose turn runs: listed, renamed, not deleted.
    info = json.loads(cli("sessions", "--json").stdout.splitlines()[0])
    assert (info["name"], info["last_status"]) == ("live", "running")
    renamed = cli("session", "rename", "live", "live2")
    assert renamed.stdout.strip() == "renamed session live to live2 (1 turns)"
    assert store.get(states["running"]).session == "live2"
    refused = cli("session", "delete", "live2")
    assert refused.returncode == 2 and "has a turn that has not ended" in refused.stderr
    assert cli("session", "rename", "nope", "x").stderr.strip() == "error: no such session: nope"
