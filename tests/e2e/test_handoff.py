"""Graceful handoff end to end (issue #3; DESIGN guarantees 3 and 5).

Real workers, real signals. A worker told to stop hands its turn back to the front of
its queue and exits within the grace period; another worker resumes from the last
commit, and the transcript holds every scripted step exactly once.
"""

from __future__ import annotations

import json
import re
import secrets
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
from rq.queue import Queue
from rq.worker import Worker, WorkerStatus

from runner import queueing
from runner.events import Event, MessageEvent, Status, StatusEvent, ToolCallOut, WorkspaceEvent
from runner.keys import Keys, new_run_id
from runner.settings import Settings
from runner.store import RunRecord, RunStore
from runner.workspace.blobs import open_blobs
from runner.workspace.scan import Scanner
from tests.helpers import Proc, step_script, wait_for, wait_registered, write_script
from workers.worker import RunnerWorker

if TYPE_CHECKING:
    from tests.conftest import Cli, Server

T = TypeVar("T")
PROMPT = "hand me off"
# For workers that must not sweep while a test hands a turn off: each sweeps once as it
# starts, then not for ten minutes. A run back in its queue after a handoff was then put
# there by the worker that handed it off, not found later by a sweep (which, with the
# conftest's fast times, would re-push a lost run 2 s after the handoff).
NO_SWEEP = {"RUNNER_SWEEP_SECONDS": "600"}
INTERRUPTED_SHELL = re.compile(
    r"^interrupted by a stop \(handoff\) after (\d+\.\d) s: the command was killed$"
)


# ---------------------------------------------------------------------------- helpers


def grace_of(env: dict[str, str]) -> float:
    return float(env["RUNNER_SHUTDOWN_GRACE"])


SEEN_LATE = 1.0  # how late a poll from this process may notice a kill or an exit


def tool_deadline(grace: float) -> float:
    """When an in-flight tool is killed after a stop (workers.stop keeps a margin)."""
    return grace - min(1.5, grace / 4)


def expected_transcript(steps: list[dict[str, Any]], results: dict[int, str]) -> list[Any]:
    """The scripted transcript, OpenAI-shaped; ``results[i]`` overrides step i's tool result."""
    messages: list[Any] = [{"role": "user", "content": PROMPT}]
    for i, step in enumerate(steps):
        if "tool" not in step:
            messages.append({"role": "assistant", "content": step["content"]})
            break
        call = {
            "id": f"call_{i}",
            "type": "function",
            "function": {"name": step["tool"], "arguments": json.dumps(step["args"])},
        }
        messages.append({"role": "assistant", "content": step["content"], "tool_calls": [call]})
        content = results.get(i, f"out-{i}\nexit code 0")
        messages.append(
            {"role": "tool", "content": content, "tool_call_id": f"call_{i}", "name": step["tool"]}
        )
    return messages


def transcript(cli: Cli, run_id: str) -> list[dict[str, Any]]:
    """The transcript as ``runner transcript --json`` prints it."""
    done = cli("transcript", run_id, "--json")
    assert done.returncode == 0, done.stderr
    messages: list[dict[str, Any]] = json.loads(done.stdout)
    return messages


def statuses(store: RunStore, run_id: str) -> list[tuple[str, str | None, str | None, int]]:
    """(status, worker, reason, epoch) of every status event, in stream order."""
    return [
        (e.status.value, e.worker, e.reason, e.epoch)
        for e in store.events(run_id)
        if isinstance(e, StatusEvent)
    ]


def one_handoff(first: str, second: str) -> list[tuple[str, str | None, str | None, int]]:
    return [
        ("queued", None, "submitted", 0),
        ("running", first, None, 1),
        ("queued", first, "handoff", 1),
        ("running", second, None, 2),
        ("succeeded", second, "final answer", 2),
    ]


def assert_each_once(store: RunStore, run_id: str) -> None:
    """No assistant message, tool call or tool result is in the stream twice."""
    messages = [e for e in store.events(run_id) if isinstance(e, MessageEvent)]
    calls = [c.id for m in messages for c in (m.tool_calls or [])]
    results = [m.tool_call_id for m in messages if m.role == "tool"]
    assert len(calls) == len(set(calls)), calls
    assert len(results) == len(set(results)), results
    assert sorted(results) == sorted(calls)


def wait_owner(store: RunStore, run_id: str, steps: int = 0, epoch: int = 1) -> RunRecord:
    """Wait until attempt ``epoch`` runs the run and has committed ``steps`` messages."""

    def check() -> RunRecord | None:
        record = store.get(run_id)
        ok = record.status is Status.RUNNING and record.epoch == epoch and record.steps >= steps
        return record if ok else None

    return wait_for(check, 20, 0.02, what=f"run {run_id} at {steps} steps in epoch {epoch}")


def committed_in(store: RunStore, run_id: str, epoch: int) -> bool:
    """Whether attempt ``epoch`` has committed a transcript step."""
    return any(isinstance(e, MessageEvent) and e.epoch == epoch for e in store.events(run_id))


def record_after_handoff(store: RunStore, run_id: str, epoch: int) -> RunRecord:
    """The run's record between attempt ``epoch``'s handoff and the next attempt's first commit.

    A commit with a step resets ``dirty``, so a handoff counted as a dirty restart is only
    visible before it: the record is read as soon as the handoff event is in the stream,
    and the stream read after it shows no commit of a later attempt yet.
    """

    def handed_off() -> bool:
        return any(
            isinstance(e, StatusEvent) and e.status is Status.QUEUED and e.reason == "handoff"
            for e in store.events(run_id)
            if e.epoch == epoch
        )

    wait_for(handed_off, 20, 0.005, what=f"attempt {epoch} of {run_id} to hand off")
    record = store.get(run_id)
    later = [e for e in store.events(run_id) if isinstance(e, MessageEvent) and e.epoch > epoch]
    assert not later, "the next attempt committed before the record could be read"
    return record


def in_queue(server: Server, queue: str = "default") -> list[str]:
    """The job ids waiting in an RQ queue, front first."""
    return list(Queue(queue, connection=server.client(decode=False)).job_ids)


def wait_done(store: RunStore, run_id: str, timeout: float = 30) -> RunRecord:
    return wait_for(
        lambda: (r := store.get(run_id)).terminal and r, timeout, what=f"run {run_id} to end"
    )


def start_follower(cli: Cli, run_id: str) -> Proc:
    return cli.spawn("follow", run_id, "--json", log=f"follow-{run_id}.log")


def check_follower(follower: Proc, store: RunStore, run_id: str) -> list[dict[str, Any]]:
    """The follower exited 0 and printed exactly the stream: no gap, no duplicate."""
    assert follower.wait(15) == 0, follower.output()
    printed = [json.loads(line) for line in follower.output().splitlines() if line.startswith("{")]
    printed = [e for e in printed if not e.get("ephemeral")]  # deltas are not the stream
    ids = [e["id"] for e in printed]
    assert len(ids) == len(set(ids)), "an event was printed twice"
    assert ids == [e.id for e in store.events(run_id)], "the follower missed an event"
    return printed


def stop_worker(
    proc: Proc, sig: int, group: bool = False, meanwhile: Callable[[], T] | None = None
) -> tuple[int, float, T | None]:
    """Signal a worker (its PID, or its whole group); its exit code and seconds to exit.

    ``meanwhile`` runs after the signal, while the worker hands off; its result is returned.
    """
    start = time.monotonic()
    if group:
        proc.signal_group(sig)
    else:
        proc.signal(sig)
    seen = meanwhile() if meanwhile is not None else None
    try:
        code = proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"worker {proc.name} did not exit:\n{proc.output()}") from None
    return code, time.monotonic() - start, seen


def sleep_marker() -> tuple[str, str]:
    """A ``sleep 60`` with a unique duration, findable in /proc with the marker."""
    marker = f"60.{secrets.randbelow(10**9):09d}"
    return f"sleep {marker}", marker


def marked_pids(marker: str) -> list[int]:
    """PIDs whose command line holds ``marker`` (the tool's shell and its ``sleep``)."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if marker.encode() in cmdline.read_bytes():
                pids.append(int(cmdline.parent.name))
        except OSError:
            continue
    return pids


def spawn_worker(cli: Cli, name: str, extra_env: dict[str, str] | None = None) -> Proc:
    """Start a worker without waiting for it (see ``registered``)."""
    env = {**cli.env, **(extra_env or {})}
    proc = cli.spawn("worker", "--name", name, log=f"worker-{name}.log", env=env)
    proc.name = name
    return proc


def registered(server: Server, proc: Proc) -> Proc:
    """Wait until a spawned worker has registered with RQ (and so listens on its queue)."""
    return wait_registered(server.client(), proc)


def two_workers(
    cli: Cli, server: Server, extra_env: dict[str, str] | None = None
) -> dict[str, Proc]:
    """Workers w1 and w2 on the default queue, started side by side."""
    workers = {name: spawn_worker(cli, name, extra_env) for name in ("w1", "w2")}
    return {name: registered(server, proc) for name, proc in workers.items()}


def submit(cli: Cli, tmp_path: Path, steps: list[dict[str, Any]]) -> str:
    script = write_script(tmp_path / f"script-{secrets.token_hex(3)}.json", steps)
    return str(cli.submit("--model", "scripted", "--script", str(script), PROMPT))


# ---------------------------------------------------------------------------- tests


@pytest.mark.parametrize(
    ("sig", "group"),
    [
        pytest.param(signal.SIGTERM, False, id="sigterm-pid"),
        pytest.param(signal.SIGTERM, True, id="sigterm-group"),
        pytest.param(signal.SIGHUP, False, id="sighup-pid"),
        pytest.param(signal.SIGHUP, True, id="sighup-group"),
        pytest.param(signal.SIGINT, False, id="sigint-pid"),
    ],
)
def test_stopped_worker_hands_off_and_another_finishes_the_turn(
    cli: Cli,
    store: RunStore,
    server: Server,
    env: dict[str, str],
    tmp_path: Path,
    sig: int,
    group: bool,
) -> None:
    steps = step_script(6, sleep=0.3)
    workers = two_workers(cli, server, NO_SWEEP)
    run_id = submit(cli, tmp_path, steps)
    follower = start_follower(cli, run_id)
    first = wait_owner(store, run_id, steps=3).worker
    (second,) = set(workers) - {first}

    # The other worker is frozen until the record has been read, so its claim and first
    # commit (which resets dirty) cannot race the read, however loaded the machine is.
    workers[second].signal(signal.SIGSTOP)
    try:
        code, took, handed = stop_worker(
            workers[first], sig, group, lambda: record_after_handoff(store, run_id, 1)
        )
    finally:
        workers[second].signal(signal.SIGCONT)

    assert code == 0, workers[first].output()
    assert took < grace_of(env), f"worker took {took:.2f} s to exit"
    assert handed is not None and handed.dirty == 0, handed  # a handoff is no dirty restart
    # No sweep runs now: only the handing-off worker's requeue lets the other one finish.
    assert wait_done(store, run_id).status is Status.SUCCEEDED
    assert transcript(cli, run_id) == expected_transcript(steps, {})
    assert statuses(store, run_id) == one_handoff(first, second)
    assert_each_once(store, run_id)
    assert "Traceback" not in workers[first].output()
    # The same signal to the worker left idle: it just exits.
    code, took, _ = stop_worker(workers[second], sig, group)
    assert code == 0, workers[second].output()
    assert took < grace_of(env), f"idle worker took {took:.2f} s to exit"
    printed = check_follower(follower, store, run_id)
    assert [e["status"] for e in printed if e["type"] == "status"] == [
        "queued",
        "running",
        "queued",
        "running",
        "succeeded",
    ]


def test_tool_in_flight_is_killed_at_the_grace_deadline(
    cli: Cli, store: RunStore, server: Server, env: dict[str, str], tmp_path: Path
) -> None:
    command, marker = sleep_marker()
    steps = [
        {"content": "step 0", "tool": "shell", "args": {"command": "echo out-0"}},
        {"content": "step 1", "tool": "shell", "args": {"command": command}},
        {"content": "step 2", "tool": "shell", "args": {"command": "echo out-2"}},
        {"content": "All done."},
    ]
    workers = two_workers(cli, server)
    run_id = submit(cli, tmp_path, steps)
    first = wait_owner(store, run_id, steps=3).worker
    (second,) = set(workers) - {first}
    wait_for(lambda: marked_pids(marker), 10, 0.02, what="the tool's sleep to start")

    start = time.monotonic()
    # To the whole group: the tool runs in a session of its own, so only the turn's
    # deadline may kill it, not the signal itself.
    workers[first].signal_group(signal.SIGTERM)
    wait_for(lambda: not marked_pids(marker), 20, 0.02, what="the tool to be killed")
    killed_after = time.monotonic() - start
    code = workers[first].wait(timeout=20)
    exited_after = time.monotonic() - start

    grace = grace_of(env)
    # The tool got what was left of the grace (not killed at once), then no more: it was
    # killed by the turn, and the worker still exited cleanly within the grace. This
    # process sees the kill and the exit only when a loaded machine schedules its polls:
    # SEEN_LATE of slack, still short of the worker's own hard kill at grace + 0.5 s,
    # which would have ended the horse dirty (exit code != 0).
    assert tool_deadline(grace) - 0.1 <= killed_after < grace + SEEN_LATE, killed_after
    assert code == 0, workers[first].output()
    assert exited_after < grace + SEEN_LATE, exited_after
    assert wait_done(store, run_id).status is Status.SUCCEEDED
    messages = transcript(cli, run_id)
    interrupted = messages[4]["content"]
    assert INTERRUPTED_SHELL.match(interrupted), interrupted
    assert messages == expected_transcript(steps, {1: interrupted})
    assert statuses(store, run_id) == one_handoff(first, second)
    assert_each_once(store, run_id)


def test_stop_during_model_sleep_hands_off_at_once(
    cli: Cli, store: RunStore, server: Server, env: dict[str, str], tmp_path: Path
) -> None:
    steps = [
        {"content": "step 0", "tool": "shell", "args": {"command": "echo out-0"}},
        {"content": "step 1", "tool": "shell", "args": {"command": "echo out-1"}, "sleep": 30},
        {"content": "All done."},
    ]
    grace = 8.0  # a tool would get 6.5 s: far from "at once", even on a loaded machine
    workers = two_workers(cli, server, {**NO_SWEEP, "RUNNER_SHUTDOWN_GRACE": str(grace)})
    run_id = submit(cli, tmp_path, steps)
    first = wait_owner(store, run_id, steps=2).worker  # step 0 done: the model now thinks
    (second,) = set(workers) - {first}

    start = time.monotonic()
    workers[first].signal(signal.SIGTERM)
    handed = record_after_handoff(store, run_id, 1)
    handed_off_after = time.monotonic() - start
    code = workers[first].wait(timeout=20)
    exited_after = time.monotonic() - start

    # The thought is abandoned at once: nowhere near the deadline a tool would get.
    assert handed_off_after < 2.0, handed_off_after
    assert handed.dirty == 0, handed  # a handoff is no dirty restart
    assert code == 0, workers[first].output()
    assert exited_after < tool_deadline(grace), exited_after
    # The other worker resumes: into the same 30 s thought, so cancel it there.
    assert wait_owner(store, run_id, epoch=2).worker == second
    assert cli("cancel", run_id).returncode == 0
    assert wait_done(store, run_id).status is Status.CANCELLED
    # The abandoned thought left nothing behind; step 0 is there exactly once.
    assert transcript(cli, run_id) == expected_transcript(steps, {})[:3]
    assert statuses(store, run_id)[:4] == one_handoff(first, second)[:4]
    assert_each_once(store, run_id)


def test_second_signal_hurries_the_handoff(
    cli: Cli, store: RunStore, server: Server, env: dict[str, str], tmp_path: Path
) -> None:
    command, marker = sleep_marker()
    steps = [
        {"content": "step 0", "tool": "shell", "args": {"command": command}},
        {"content": "step 1", "tool": "shell", "args": {"command": "echo out-1"}},
        {"content": "All done."},
    ]
    # A grace long enough that "well before the deadline" stays true on a loaded machine.
    grace = 8.0
    workers = two_workers(cli, server, {"RUNNER_SHUTDOWN_GRACE": str(grace)})
    run_id = submit(cli, tmp_path, steps)
    first = wait_owner(store, run_id, steps=1).worker
    (second,) = set(workers) - {first}
    worker = workers[first]
    wait_for(lambda: marked_pids(marker), 10, 0.02, what="the tool's sleep to start")

    start = time.monotonic()
    worker.signal(signal.SIGTERM)
    wait_for(lambda: "handing off" in worker.output(), 5, 0.02, what="the first signal")
    worker.signal(signal.SIGTERM)
    wait_for(lambda: not marked_pids(marker), 20, 0.02, what="the tool to be killed")
    killed_after = time.monotonic() - start
    code = worker.wait(timeout=20)

    # Killed well before the deadline the first signal alone would have given it.
    assert killed_after < tool_deadline(grace) - 2, killed_after
    assert code == 0, worker.output()
    assert wait_done(store, run_id).status is Status.SUCCEEDED
    messages = transcript(cli, run_id)
    interrupted = messages[2]["content"]
    assert INTERRUPTED_SHELL.match(interrupted), interrupted
    assert messages == expected_transcript(steps, {0: interrupted})
    assert statuses(store, run_id) == one_handoff(first, second)
    assert_each_once(store, run_id)


def test_handed_off_turn_goes_to_the_front_of_its_queue(
    cli: Cli, store: RunStore, server: Server, tmp_path: Path
) -> None:
    thinking = [
        {"content": "step 0", "tool": "shell", "args": {"command": "echo out-0"}},
        {"content": "step 1", "tool": "shell", "args": {"command": "echo out-1"}, "sleep": 30},
        {"content": "All done."},
    ]
    w1 = registered(server, spawn_worker(cli, "w1", NO_SWEEP))
    handed = submit(cli, tmp_path, thinking)
    wait_owner(store, handed, steps=2)  # w1 is busy with it for 30 s
    waiting = submit(cli, tmp_path, step_script(1))  # so this one queues behind it

    code, _, _ = stop_worker(w1, signal.SIGTERM)
    assert code == 0, w1.output()
    # No worker is left to sweep: w1 put it there itself, ahead of the one waiting.
    assert in_queue(server) == [handed, waiting]
    registered(server, spawn_worker(cli, "w2", NO_SWEEP))

    def taken_by_w2() -> list[str]:
        records = store.get_many([handed, waiting])
        return [r.id for r in records if r.status is Status.RUNNING and r.worker == "w2"]

    assert wait_for(taken_by_w2, 20, 0.02, what="w2 to take a run") == [handed]
    assert store.get(waiting).status is Status.QUEUED


def _interrupted_by(cause: str) -> str:
    return (
        f"interrupted: this call was interrupted {cause} before its result was recorded; "
        "it may or may not have taken effect"
    )


REPAIRS = [
    # tool, its arguments, how the attempt ended, the repaired result
    pytest.param(
        "read_file", {"path": "notes.txt"}, "handoff", "notes of the turn\n", id="read_file-rerun"
    ),
    pytest.param("list_dir", {"path": "."}, "handoff", "notes.txt", id="list_dir-rerun"),
    pytest.param(
        "write_file",
        {"path": "written.txt", "content": "x"},
        "handoff",
        _interrupted_by("by a handoff"),
        id="write_file-interrupted",
    ),
    pytest.param(
        "shell",
        {"command": "echo ran >> written.txt"},
        "crash",
        _interrupted_by("when its worker was lost (lease expired)"),
        id="shell-interrupted",
    ),
]


@pytest.mark.parametrize(("tool", "args", "ended", "result"), REPAIRS)
def test_resume_repairs_a_tool_call_without_result(
    cli: Cli,
    store: RunStore,
    server: Server,
    env: dict[str, str],
    tool: str,
    args: dict[str, Any],
    ended: str,
    result: str,
) -> None:
    steps: list[dict[str, Any]] = [
        {"content": "step 0", "tool": tool, "args": args},
        {"content": "All done."},
    ]
    # An attempt that committed the model's answer and ended before the tool's result:
    # built with the store itself, so the state is exact.
    run_id = new_run_id()
    fields = {"queue": "default", "model": "scripted", "max_steps": "10", "title": PROMPT}
    # The turn's workspace holds notes.txt, committed (issue 11: a restore makes the
    # directory match the last commit, so a file the stream does not name is removed).
    workspace = Path(env["RUNNER_WORKSPACE_ROOT"]) / run_id
    workspace.mkdir(parents=True)
    (workspace / "notes.txt").write_text("notes of the turn\n")
    committed = Scanner(workspace, 1 << 20).scan()
    open_blobs(Settings(redis_url=server.url), store.redis, store.keys, run_id).put(committed.fresh)
    first = [
        StatusEvent(status=Status.QUEUED, reason="submitted"),
        WorkspaceEvent(changes=list(committed.entries.values())),
        MessageEvent(role="user", content=PROMPT),
    ]
    store.create(run_id, fields, first, json.dumps({"steps": steps}))
    epoch = store.claim(run_id, "ghost", 30)
    assert epoch == 1
    call = ToolCallOut(id="call_0", name=tool, arguments=args)
    answer = MessageEvent(role="assistant", content="step 0", tool_calls=[call])
    store.commit(run_id, epoch, [answer], seen=len(store.events(run_id)))
    if ended == "handoff":
        store.finish(run_id, epoch, Status.QUEUED, "ghost", "handoff")
    else:
        store.requeue_dead(run_id, "lease expired", 3, epoch=epoch, lease_gone=False)
    queueing.push_front(server.client(decode=False), run_id, "default", 3600)

    cli.worker("w1")

    assert wait_done(store, run_id).status is Status.SUCCEEDED
    messages = transcript(cli, run_id)
    assert messages == expected_transcript(steps, {0: result})
    # A call that may have had effects is never run a second time.
    assert not (workspace / "written.txt").exists()
    assert statuses(store, run_id)[-2:] == [
        ("running", "w1", None, 2),
        ("succeeded", "w1", "final answer", 2),
    ]


def test_a_final_answer_committed_by_a_lost_attempt_ends_the_turn(
    cli: Cli, store: RunStore, server: Server
) -> None:
    """An attempt committed the final answer and was lost before it ended the run (a
    frozen worker whose lease ran out, seen in the soak): the next attempt ends the run
    with that answer; it does not ask the model again (a second answer, paid twice)."""
    steps: list[dict[str, Any]] = [
        {"content": "step 0", "tool": "shell", "args": {"command": "echo out-0"}},
        {"content": "All done."},
    ]
    run_id = new_run_id()
    fields = {"queue": "default", "model": "scripted", "max_steps": "10", "title": PROMPT}
    first: list[Event] = [
        StatusEvent(status=Status.QUEUED, reason="submitted"),
        MessageEvent(role="user", content=PROMPT),
    ]
    store.create(run_id, fields, first, json.dumps({"steps": steps}))
    epoch = store.claim(run_id, "ghost", 30)
    assert epoch == 1
    call = ToolCallOut(id="call_0", name="shell", arguments=steps[0]["args"])
    committed = [
        MessageEvent(role="assistant", content="step 0", tool_calls=[call]),
        MessageEvent(
            role="tool", content="out-0\nexit code 0", tool_call_id="call_0", name="shell"
        ),
        MessageEvent(role="assistant", content="All done."),
    ]
    for event in committed:
        store.commit(run_id, epoch, [event], seen=len(store.events(run_id)))
    store.requeue_dead(run_id, "lease expired", 3, epoch=epoch, lease_gone=False)
    queueing.push_front(server.client(decode=False), run_id, "default", 3600)

    cli.worker("w1")

    assert wait_done(store, run_id).status is Status.SUCCEEDED
    assert transcript(cli, run_id) == expected_transcript(steps, {0: "out-0\nexit code 0"})
    assert not [e for e in store.events(run_id) if e.epoch == 2 and not isinstance(e, StatusEvent)]
    assert statuses(store, run_id)[-2:] == [
        ("running", "w1", None, 2),
        ("succeeded", "w1", "final answer", 2),
    ]


@pytest.mark.slow
def test_ten_handoffs_in_a_row(
    cli: Cli, store: RunStore, server: Server, env: dict[str, str], tmp_path: Path
) -> None:
    handoffs = 10
    steps = step_script(20, sleep=0.3)
    run_id = submit(cli, tmp_path, steps)
    follower = start_follower(cli, run_id)
    current = registered(server, spawn_worker(cli, "w0", NO_SWEEP))
    for i in range(handoffs):
        epoch = i + 1
        record = wait_owner(store, run_id, epoch=epoch)
        assert record.worker == current.name
        wait_for(lambda: committed_in(store, run_id, epoch), 10, 0.02, what="a step")  # noqa: B023
        code, took, _ = stop_worker(current, signal.SIGTERM)
        assert code == 0, current.output()
        assert took < grace_of(env), f"handoff {i}: worker took {took:.2f} s to exit"
        assert ("queued", current.name, "handoff", epoch) in statuses(store, run_id)
        # No worker is left to sweep or to take the run: the one that handed it off put
        # it back in its queue, and did not count the handoff as a dirty restart.
        record = store.get(run_id)
        assert (record.status, record.epoch, record.dirty) == (Status.QUEUED, epoch, 0), record
        assert in_queue(server) == [run_id], f"handoff {i}: the run is not back in its queue"
        # The next worker is then the only one listening when it takes the turn.
        following = spawn_worker(cli, f"w{i + 1}" if i + 1 < handoffs else "last", NO_SWEEP)
        current = registered(server, following)

    assert wait_done(store, run_id).status is Status.SUCCEEDED
    assert transcript(cli, run_id) == expected_transcript(steps, {})
    assert_each_once(store, run_id)
    names = [f"w{i}" for i in range(handoffs)]
    expected: list[tuple[str, str | None, str | None, int]] = [("queued", None, "submitted", 0)]
    for epoch, name in enumerate(names, start=1):
        expected += [("running", name, None, epoch), ("queued", name, "handoff", epoch)]
    expected += [
        ("running", "last", None, handoffs + 1),
        ("succeeded", "last", "final answer", handoffs + 1),
    ]
    assert statuses(store, run_id) == expected
    status = cli("status", run_id, "--json")
    assert status.returncode == 0, status.stderr
    record_json = json.loads(status.stdout)
    assert record_json["dirty"] == 0
    assert record_json["epoch"] == handoffs + 1
    printed = check_follower(follower, store, run_id)
    seen = [(e["status"], e.get("worker")) for e in printed if e["type"] == "status"]
    assert seen == [(s, w) for s, w, _, _ in expected]


def test_stop_before_the_horse_exists_reaches_it_once_forked(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The handler called directly: a stop between dequeue and fork is not lost."""
    settings = Settings(
        redis_url=server.url,
        shutdown_grace=3,
        _env_file=None,  # type: ignore[call-arg]
    )
    rq_conn = server.client(decode=False)
    store = RunStore(server.client(), Keys(settings.prefix))
    worker = RunnerWorker(
        [Queue("default", connection=rq_conn)], settings, store, connection=rq_conn, name="direct"
    )
    monkeypatch.setattr(Worker, "maintain_heartbeats", lambda *_: None)
    worker.set_state(WorkerStatus.BUSY)  # the turn was dequeued; its horse not forked yet
    worker.request_stop(signal.SIGTERM, None)  # must neither raise nor be dropped
    # A stand-in horse: SIGUSR1, the handoff signal, ends it (its default action).
    horse = subprocess.Popen(["sleep", "30"])
    try:
        worker._horse_pid = horse.pid
        worker.maintain_heartbeats(None, None)  # type: ignore[arg-type]
        assert horse.wait(timeout=5) == -signal.SIGUSR1
        assert not worker._handoff_unsent  # told once; a second signal would hurry it
        assert not worker._horse_killed
    finally:
        horse.kill()
        horse.wait()
