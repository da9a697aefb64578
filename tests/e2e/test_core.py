"""Issue 2 end to end: submit, run on a worker subprocess, follow from anywhere.

Every process here is real: the server, the worker, each follower. Nothing sleeps to
wait for a state; it polls with a deadline.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from runner.events import MessageEvent, StatusEvent
from runner.store import RunStore
from tests.helpers import RUNNER, step_script, wait_for, write_script

REPO = Path(__file__).resolve().parents[2]
TOOL_STEPS = 4  # + the final answer: five model calls
THINK = 0.4  # seconds the scripted model thinks per tool step: a turn of about 2 s
GATED = 2  # the tool step of the gated script that waits at the gate


@dataclass
class Follower:
    """A ``runner follow`` subprocess with its stdout and stderr in separate files."""

    popen: subprocess.Popen[bytes]
    out: Path
    err: Path

    def wait(self, timeout: float = 60) -> int:
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            # Followers run with PYTHONFAULTHANDLER: SIGABRT makes a hung one print
            # where each of its threads is, so a rare hang says where it hangs.
            self.popen.send_signal(signal.SIGABRT)
            self.popen.wait(timeout=10)
            raise AssertionError(
                f"follow still running after {timeout} s:\n{self.stderr()}"
            ) from None

    def stdout(self) -> str:
        return self.out.read_text(errors="replace")

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def lines(self) -> list[dict[str, Any]]:
        """The ``--json`` lines printed so far (a partly written last line is left out)."""
        text = self.stdout()
        complete = text[: text.rfind("\n") + 1]
        return [json.loads(line) for line in complete.splitlines() if line.strip()]

    def events(self) -> list[dict[str, Any]]:
        """The committed events printed so far (ephemeral deltas left out)."""
        return [e for e in self.lines() if not e.get("ephemeral")]

    def printed(self, predicate: Any) -> bool:
        return any(predicate(e) for e in self.events())


class Followers:
    """Starts followers; kills any still running at teardown."""

    def __init__(self, env: dict[str, str], tmp_path: Path) -> None:
        self.env = env
        self.tmp_path = tmp_path
        self.started: list[Follower] = []

    def __call__(
        self,
        run_id: str,
        *args: str,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> Follower:
        n = len(self.started)
        out, err = self.tmp_path / f"follow-{n}.out", self.tmp_path / f"follow-{n}.err"
        with out.open("wb") as fo, err.open("wb") as fe:
            popen = subprocess.Popen(
                [*RUNNER, "follow", run_id, *args],
                env={**(env or self.env), "PYTHONFAULTHANDLER": "1"},
                cwd=cwd,
                stdout=fo,
                stderr=fe,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        follower = Follower(popen, out, err)
        self.started.append(follower)
        return follower

    def stop_all(self) -> None:
        for f in self.started:
            if f.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(f.popen.pid, signal.SIGKILL)
                f.popen.wait(timeout=10)


@pytest.fixture
def follow(env: dict[str, str], tmp_path: Path) -> Iterator[Followers]:
    followers = Followers(env, tmp_path)
    yield followers
    followers.stop_all()


@pytest.fixture
def five(tmp_path: Path) -> Path:
    """A five-step script: four shell calls, each thought about for THINK s, then an answer."""
    return write_script(tmp_path / "five.json", step_script(TOOL_STEPS, sleep=THINK))


@dataclass
class Gate:
    """A five-step script whose third tool call waits until the test opens the gate.

    It holds the run mid-way for as long as the test needs, so "mid-run" never depends on
    how fast the machine is.
    """

    script: Path
    path: Path

    def open(self) -> None:
        self.path.touch()


@pytest.fixture
def gated(tmp_path: Path) -> Gate:
    path = tmp_path / "gate"
    steps = step_script(TOOL_STEPS, sleep=THINK)
    steps[GATED]["args"]["command"] = gate_command(path)
    return Gate(write_script(tmp_path / "gated.json", steps), path)


def gate_command(path: Path) -> str:
    return f"while [ ! -e {path} ]; do sleep 0.02; done; echo out-{GATED}"


def at_gate(follower: Follower) -> bool:
    """Whether the follower has printed the call that waits at the gate."""
    return follower.printed(lambda e: e.get("content") == f"step {GATED}")


def submit(cli: Any, script: Path, *extra: str, prompt: str = "look around") -> str:
    return str(cli.submit("--model", "scripted", "--script", str(script), *extra, prompt))


def stream_id(event: dict[str, Any]) -> tuple[int, int]:
    ms, seq = event["id"].split("-")
    return int(ms), int(seq)


def messages(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == "message"]


def statuses(events: list[dict[str, Any]]) -> list[str]:
    return [e["status"] for e in events if e["type"] == "status"]


def assert_five_step_turn(
    events: list[dict[str, Any]], prompt: str = "look around", gate: Gate | None = None
) -> None:
    """The whole turn, each message once and in order, ending in ``succeeded``."""
    ids = [stream_id(e) for e in events]
    assert ids == sorted(set(ids)), "event ids must strictly increase, without duplicates"
    for e in events:
        assert {"v", "id", "ts", "epoch", "type"} <= e.keys()
        assert e["ts"].endswith("Z")
    msgs = messages(events)
    assert msgs[0] == {**msgs[0], "role": "user", "content": prompt}
    rest = msgs[1:]
    assert len(rest) == 2 * TOOL_STEPS + 1, [m["content"] for m in rest]
    for i in range(TOOL_STEPS):
        call, result = rest[2 * i], rest[2 * i + 1]
        assert call["role"] == "assistant"
        assert call["content"] == f"step {i}"
        command = gate_command(gate.path) if gate and i == GATED else f"echo out-{i}"
        assert call["tool_calls"] == [
            {"id": f"call_{i}", "name": "shell", "arguments": {"command": command}}
        ]
        assert result["role"] == "tool"
        assert result["tool_call_id"] == f"call_{i}"
        assert result["name"] == "shell"
        assert result["content"].startswith(f"out-{i}\n")
    assert rest[-1]["role"] == "assistant"
    assert rest[-1]["content"] == "All done."
    assert "tool_calls" not in rest[-1]
    assert statuses(events)[-1] == "succeeded"
    assert events[-1]["type"] == "status"


def stored(store: RunStore, run_id: str) -> list[dict[str, Any]]:
    """The run's events as ``follow --json`` prints them."""
    return [e.model_dump(mode="json", exclude_none=True) for e in store.events(run_id)]


def assistant_count(store: RunStore, run_id: str) -> int:
    return sum(
        1 for e in store.events(run_id) if isinstance(e, MessageEvent) and e.role == "assistant"
    )


def test_follow_from_elsewhere_sees_every_step_once(
    cli: Any, follow: Followers, gated: Gate, store: RunStore, server: Any, tmp_path: Path
) -> None:
    cli.worker("w1")
    run_id = submit(cli, gated.script)
    # Another "host": its own HOME and working directory, and nothing but the URL.
    home, elsewhere = tmp_path / "other-home", tmp_path / "elsewhere"
    home.mkdir()
    elsewhere.mkdir()
    bare = {
        "RUNNER_REDIS_URL": server.url,
        "HOME": str(home),
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(REPO),
    }
    follower = follow(run_id, "--json", env=bare, cwd=elsewhere)
    wait_for(lambda: at_gate(follower), what="the follower to be live mid-run")
    gated.open()
    assert follower.wait() == 0, follower.stderr()

    events = follower.events()
    assert_five_step_turn(events, gate=gated)
    assert statuses(events) == ["queued", "running", "succeeded"]
    running = [e for e in events if e["type"] == "status" and e["status"] == "running"]
    assert running[0]["worker"] == "w1"
    assert events == stored(store, run_id)
    assert not (home / ".local").exists(), "the follower must not touch its HOME"


def test_two_followers_at_different_times_print_the_same(
    cli: Any, follow: Followers, gated: Gate, store: RunStore
) -> None:
    cli.worker("w1")
    run_id = submit(cli, gated.script)
    early = follow(run_id, "--json")
    wait_for(lambda: at_gate(early), what="the turn to reach the gate")
    late = follow(run_id, "--json")
    wait_for(lambda: at_gate(late), what="the second follower to catch up")
    assert not store.get(run_id).terminal
    gated.open()
    assert early.wait() == 0, early.stderr()
    assert late.wait() == 0, late.stderr()
    assert early.events() == late.events()  # deltas are ephemeral: each sees its own
    assert_five_step_turn(late.events(), gate=gated)


def test_sigkilled_follower_changes_nothing(
    cli: Any, follow: Followers, gated: Gate, store: RunStore
) -> None:
    cli.worker("w1")
    run_id = submit(cli, gated.script)
    doomed = follow(run_id, "--json")
    wait_for(lambda: at_gate(doomed), what="the turn to reach the gate")
    os.killpg(doomed.popen.pid, signal.SIGKILL)
    assert doomed.wait() == -signal.SIGKILL
    assert store.get(run_id).status == "running"
    gated.open()

    wait_for(lambda: store.get(run_id).terminal, what="the run to end")
    record = store.get(run_id)
    assert (record.status, record.epoch) == ("succeeded", 1)
    again = follow(run_id, "--json")
    assert again.wait() == 0, again.stderr()
    assert_five_step_turn(again.events(), gate=gated)
    # What the killed follower had printed is a prefix of the whole.
    partial = doomed.events()
    assert partial == again.events()[: len(partial)]


def test_inspecting_a_finished_run(cli: Any, five: Path, store: RunStore) -> None:
    cli.worker("w1")
    run_id = submit(cli, five)
    # A second run on a queue nobody serves stays queued.
    idle = submit(cli, five, "--queue", "idle", prompt="never runs")
    done = cli("follow", run_id)
    assert done.returncode == 0, done.stderr

    # Human output: roles, tool calls with their arguments, statuses with the worker.
    text = done.stdout
    assert "user: look around" in text
    assert "assistant: step 0" in text
    assert "assistant → shell: echo out-2" in text
    assert "tool shell" in text
    assert "out-3" in text
    assert "running on w1" in text
    assert "succeeded on w1" in text
    assert "All done." in text

    # The rest only reads: ask it all at once.
    queries = {
        "tail": ["follow", run_id, "--json", "--tail", "3"],
        "tail0": ["follow", run_id, "--json", "--tail", "0"],
        "status": ["status", run_id, "--json"],
        "human": ["status", run_id],
        "list": ["list", "--json"],
        "succeeded": ["list", "--status", "succeeded", "--json"],
        "queued": ["list", "--status", "queued", "--json"],
        "transcript": ["transcript", run_id, "--json"],
    }
    with ThreadPoolExecutor(4) as pool:
        got = dict(zip(queries, pool.map(lambda argv: cli(*argv), queries.values()), strict=True))
    for name, result in got.items():
        assert result.returncode == 0, (name, result.stderr)

    # --tail N: only the last N events; --tail 0: none.
    tail = [json.loads(line) for line in got["tail"].stdout.splitlines()]
    assert tail == stored(store, run_id)[-3:]
    assert got["tail0"].stdout == ""

    record = json.loads(got["status"].stdout)
    assert record["id"] == run_id
    assert record["status"] == "succeeded"
    assert record["worker"] == "w1"
    assert record["epoch"] == 1
    assert record["title"] == "look around"
    assert "succeeded" in got["human"].stdout
    assert "w1" in got["human"].stdout

    by_id = {r["id"]: r for r in map(json.loads, got["list"].stdout.splitlines())}
    assert by_id[run_id]["status"] == "succeeded"
    assert by_id[idle]["status"] == "queued"
    for wanted, present, absent in (("succeeded", run_id, idle), ("queued", idle, run_id)):
        ids = [json.loads(line)["id"] for line in got[wanted].stdout.splitlines()]
        assert present in ids
        assert absent not in ids

    assert json.loads(got["transcript"].stdout) == expected_transcript()


def expected_transcript(gate: Gate | None = None) -> list[dict[str, Any]]:
    """The five-step turn as OpenAI chat messages."""
    out: list[dict[str, Any]] = [{"role": "user", "content": "look around"}]
    for i in range(TOOL_STEPS):
        call_id = f"call_{i}"
        command = gate_command(gate.path) if gate and i == GATED else f"echo out-{i}"
        arguments = json.dumps({"command": command})
        out.append(
            {
                "role": "assistant",
                "content": f"step {i}",
                "tool_calls": [
                    {
                        "id": call_id,
                        "type": "function",
                        "function": {"name": "shell", "arguments": arguments},
                    }
                ],
            }
        )
        out.append(
            {
                "role": "tool",
                "content": f"out-{i}\nexit code 0",
                "tool_call_id": call_id,
                "name": "shell",
            }
        )
    out.append({"role": "assistant", "content": "All done."})
    return out


def test_exit_codes_failed_and_cancelled(
    cli: Any, follow: Followers, five: Path, store: RunStore
) -> None:
    cli.worker("w1")
    # A limit reached parks the run (issue 13): follow exits 5.
    parked = submit(cli, five, "--max-steps", "1")
    done = cli("follow", parked, "--json")
    assert done.returncode == 5, done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["status"] == "waiting"
    assert "max steps" in store.get(parked).reason
    # A turn that cannot fit its model's window at all fails: follow exits 1.
    failing = submit(cli, five, "--context-tokens", "1024")
    done = cli("follow", failing, "--json")
    assert done.returncode == 1, done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["status"] == "failed"
    assert "context window" in store.get(failing).error

    # A run that waits on a queue nobody serves: follow says so, then a cancel ends it.
    queued = submit(cli, five, "--queue", "idle")
    waiting = follow(queued)
    wait_for(lambda: "waiting in queue" in waiting.stderr(), what="the queue note")
    assert "'idle'; 0 worker(s) serve it" in waiting.stderr()
    assert "runner worker --queue idle" in waiting.stderr()
    cancelled = cli("cancel", queued)
    assert cancelled.returncode == 0, cancelled.stderr
    assert waiting.wait() == 3, waiting.stderr()
    assert "cancelled" in waiting.stdout()
    assert store.get(queued).status == "cancelled"
    again = cli("follow", queued, "--json")
    assert again.returncode == 3

    # Suspended after a crash loop (driven through the store): follow exits 4, and
    # `runner resume` puts it back in its queue.
    looping = submit(cli, five, "--queue", "idle")
    for _ in range(2):
        epoch = store.claim(looping, "gone", 5)
        assert epoch is not None
        store.requeue_dead(looping, "oom", 1, epoch=epoch, lease_gone=False)
    assert store.get(looping).status == "suspended"
    parked = cli("follow", looping, "--json")
    assert parked.returncode == 4, parked.stderr
    assert "crash loop" in json.loads(parked.stdout.splitlines()[-1])["reason"]
    resumed = cli("resume", looping)
    assert resumed.returncode == 0, resumed.stderr
    assert store.get(looping).status == "queued"


def test_queued_note_counts_the_workers(
    cli: Any, follow: Followers, tmp_path: Path, store: RunStore
) -> None:
    slow = write_script(tmp_path / "slow.json", [{"content": "hmm", "sleep": 30}])
    busy = submit(cli, slow)
    cli.worker("w1")
    wait_for(lambda: store.get(busy).status == "running", what="the worker to be busy")
    behind = submit(cli, slow)
    waiting = follow(behind)
    wait_for(lambda: "waiting in queue" in waiting.stderr(), what="the queue note")
    assert "'default'; 1 worker(s) serve it" in waiting.stderr()
    assert waiting.popen.poll() is None, "it keeps following while queued"


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGINT], ids=["SIGHUP", "SIGINT"])
def test_signal_detaches_follower_and_run_goes_on(
    cli: Any, follow: Followers, gated: Gate, store: RunStore, sig: signal.Signals
) -> None:
    cli.worker("w1")
    run_id = submit(cli, gated.script)
    follower = follow(run_id, "--json")
    wait_for(lambda: at_gate(follower), what="the turn to reach the gate")
    os.kill(follower.popen.pid, sig)
    assert follower.wait() == 130, follower.stderr()
    assert f"Reattach with: runner follow {run_id}" in follower.stderr()
    assert "Traceback" not in follower.stderr()
    assert store.get(run_id).status == "running", "detaching leaves the run alone"
    gated.open()

    wait_for(lambda: store.get(run_id).terminal, what="the run to end")
    record = store.get(run_id)
    assert (record.status, record.epoch, record.cancel) == ("succeeded", 1, False)
    assert_five_step_turn(stored(store, run_id), gate=gated)


def test_follower_survives_a_server_restart(
    cli: Any, follow: Followers, gated: Gate, store: RunStore, server: Any
) -> None:
    cli.worker("w1")
    run_id = submit(cli, gated.script)
    follower = follow(run_id, "--json")
    wait_for(lambda: at_gate(follower), what="the turn to reach the gate")
    server.kill()
    # Keep it down until the follower has noticed, so it goes through its reconnect path.
    wait_for(lambda: "reconnecting" in follower.stderr(), what="the follower to notice")
    server.restart()
    gated.open()
    assert follower.wait() == 0, follower.stderr()
    events = follower.events()
    assert events == stored(store, run_id)
    assert statuses(events)[-1] == "succeeded"
    ids = [stream_id(e) for e in events]
    assert ids == sorted(set(ids))
    # Whatever attempts it took, the transcript is the whole turn, each message once.
    assert [m["content"] for m in messages(events) if m["role"] == "assistant"] == [
        *(f"step {i}" for i in range(TOOL_STEPS)),
        "All done.",
    ]


def test_send_reaches_a_running_turn(cli: Any, gated: Gate, store: RunStore) -> None:
    cli.worker("w1")
    run_id = submit(cli, gated.script)
    wait_for(lambda: assistant_count(store, run_id) > GATED, what="the turn to reach the gate")
    sent = cli("send", run_id, "also check the logs")
    assert sent.returncode == 0, sent.stderr
    assert run_id in sent.stdout
    gated.open()

    wait_for(lambda: store.get(run_id).terminal, what="the run to end")
    assert store.get(run_id).status == "succeeded"
    transcript = json.loads(cli("transcript", run_id, "--json").stdout)
    steered = [i for i, m in enumerate(transcript) if m["content"] == "also check the logs"]
    assert len(steered) == 1, transcript
    at = steered[0]
    assert transcript[at]["role"] == "user"
    assert at > 1, "it arrives after the turn started"
    assert transcript[at - 1]["role"] == "tool", "taken in between steps"
    assert transcript[at + 1]["role"] == "assistant", "before the next model call"
    # The turn itself is unchanged around it.
    assert at == 2 * GATED + 3, "right after the result of the call it arrived during"
    assert [m for m in transcript if m is not transcript[at]] == expected_transcript(gated)
    events = store.events(run_id)
    assert not any(isinstance(e, StatusEvent) and e.status == "failed" for e in events)
