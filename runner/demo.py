"""``runner demo``: a scripted turn that survives its worker being stopped midway.

Embedded server, two workers, a ten-step turn. After the fourth step the worker running
the turn gets SIGTERM (what a deploy, an autoscaler or ``docker stop`` sends); the turn
is handed off, resumes on the other worker, and ends. The workers have workspace roots
of their own (two hosts), so the files the turn wrote must follow it. The check line
says that the transcript holds every step exactly once and that the files followed;
the run's final diff is printed after it.
"""

from __future__ import annotations

import json
import secrets
import shlex
import signal
import sys
from typing import Any

from rich.console import Console

from runner.cli import render
from runner.client import Client, Submission
from runner.connection import redis_url
from runner.events import MessageEvent, Status, StatusEvent, to_openai
from runner.local import (
    LocalWorker,
    child_env,
    log_dir,
    public_url,
    spawn_worker,
    stop_all,
    wait_serving,
)
from runner.settings import Settings

SIGTERM_AFTER = 4  # assistant messages committed before the worker is stopped
THINK = 0.6
DEMO_GRACE = "5"


def script() -> list[dict[str, Any]]:
    """Ten steps of an agent fixing a bug in a tiny module."""
    py = shlex.quote(sys.executable)
    check = f'{py} -c "import calc; print(calc.add(2, 3))"'
    steps: list[dict[str, Any]] = [
        {
            "content": "I'll set up a small module to work on.",
            "tool": "write_file",
            "args": {"path": "calc.py", "content": "def add(a, b):\n    return a - b\n"},
        },
        {"content": "Let me look at the workspace.", "tool": "list_dir", "args": {"path": "."}},
        {"content": "Reading the module.", "tool": "read_file", "args": {"path": "calc.py"}},
        {"content": "Running a quick check.", "tool": "shell", "args": {"command": check}},
        {
            "content": "That prints -1: add() subtracts. Fixing it.",
            "tool": "write_file",
            "args": {"path": "calc.py", "content": "def add(a, b):\n    return a + b\n"},
        },
        {"content": "Checking the fix.", "tool": "shell", "args": {"command": check}},
        {
            "content": "Adding a test.",
            "tool": "write_file",
            "args": {
                "path": "test_calc.py",
                "content": "import calc\n\nassert calc.add(2, 3) == 5\nprint('test ok')\n",
            },
        },
        {
            "content": "Running the test.",
            "tool": "shell",
            "args": {"command": f"{py} test_calc.py"},
        },
        {"content": "Counting what changed.", "tool": "shell", "args": {"command": "wc -l *.py"}},
        {"content": "Fixed add() in calc.py (it subtracted); test_calc.py passes."},
    ]
    for step in steps:
        step["sleep"] = THINK
    return steps


def run(settings: Settings, console: Console) -> int:
    """Run the demo; returns the exit code."""
    url = redis_url(settings)
    client = Client(settings.model_copy(update={"redis_url": url}))
    suffix = secrets.token_hex(2)
    queue = f"demo-{suffix}"
    env = child_env(url, RUNNER_SHUTDOWN_GRACE=DEMO_GRACE)
    logs = log_dir(settings.data_dir)
    names = [f"demo-a-{suffix}", f"demo-b-{suffix}"]
    console.print(
        f"[bold]runner demo[/bold]: server {public_url(url)}, queue {queue}, "
        f"workers {names[0]} and {names[1]} (logs in {logs})"
    )
    with open(logs / f"{queue}.log", "ab") as log:
        roots = {n: str(settings.data_dir / "demo-workspaces" / n) for n in names}
        workers = [
            spawn_worker(name, [queue], {**env, "RUNNER_WORKSPACE_ROOT": roots[name]}, log)
            for name in names
        ]
        try:
            wait_serving(client.rq, queue, 2, workers)
            steps = script()
            run_id = client.submit(
                Submission(
                    prompt="calc.add(2, 3) gives the wrong answer. Find the bug, fix it, test it.",
                    model="scripted",
                    queue=queue,
                    max_steps=len(steps) + 1,
                    script=json.dumps({"steps": steps}),
                )
            )
            console.print(
                f"submitted [bold]{run_id}[/bold]; following it "
                f"(from another terminal: runner follow {run_id})\n"
            )
            events = _follow(client, console, run_id, workers)
        finally:
            stop_all(workers, float(DEMO_GRACE))
    return _verdict(console, client, run_id, steps, events)


def _follow(client: Client, console: Console, run_id: str, workers: list[LocalWorker]) -> list[Any]:
    seen: list[Any] = []
    stopped = False
    for batch in client.follow_batches(run_id):
        # A batch at a time, as `runner follow` draws it: a step's usage folds into it.
        render.events(console, batch)
        for event in batch:
            seen.append(event)
            assistants = sum(
                1 for e in seen if isinstance(e, MessageEvent) and e.role == "assistant"
            )
            if not stopped and assistants == SIGTERM_AFTER and _is_tool_result(event):
                stopped = _stop_current(client, console, run_id, workers)
    return seen


def _is_tool_result(event: Any) -> bool:
    return isinstance(event, MessageEvent) and event.role == "tool"


def _stop_current(
    client: Client, console: Console, run_id: str, workers: list[LocalWorker]
) -> bool:
    current = client.get(run_id).worker
    for worker in workers:
        if worker.name == current:
            console.print(
                f"\n[bold yellow]⚡ SIGTERM → {worker.name} (pid {worker.pid}), "
                "as a deploy or docker stop would[/bold yellow]\n"
            )
            worker.stop(signal.SIGTERM)
            return True
    return False


def _verdict(
    console: Console, client: Client, run_id: str, steps: list[dict[str, Any]], events: list[Any]
) -> int:
    record = client.get(run_id)
    messages = [to_openai(m) for m in client.transcript(run_id)]
    said = [m["content"] for m in messages if m["role"] == "assistant"]
    expected = [s["content"] for s in steps]
    call_ids = [
        c["id"] for m in messages if m["role"] == "assistant" for c in m.get("tool_calls", [])
    ]
    results = [m["tool_call_id"] for m in messages if m["role"] == "tool"]
    handoffs = sum(1 for e in events if isinstance(e, StatusEvent) and e.reason == "handoff")
    workers = {
        e.worker for e in events if isinstance(e, StatusEvent) and e.status is Status.RUNNING
    }
    restored = [
        e
        for e in events
        if isinstance(e, StatusEvent) and (e.reason or "").startswith("workspace restored")
    ]
    ok = (
        record.status is Status.SUCCEEDED
        and said == expected
        and results == call_ids
        and handoffs >= 1
        and bool(restored)
    )
    mark = "[bold green]✓[/]" if ok else "[bold red]✗[/]"
    followed = (
        f"files followed the turn to {restored[0].worker}"
        if restored
        else "the files did not follow the turn"
    )
    console.print(
        f"\n{mark} {record.status.value}: {len(said)}/{len(expected)} steps, each "
        f"exactly once and in order; {len(results)}/{len(call_ids)} tool results; "
        f"{handoffs} handoff(s) across {len(workers)} workers; {followed}"
    )
    console.print("\n[bold]final diff[/bold] (runner diff " + run_id + "):")
    console.print(render.visible(client.diff(run_id)), markup=False, highlight=False, end="")
    return 0 if ok else 1
