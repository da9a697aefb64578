"""What budgets and approvals cost a turn: the usage totals in the commit, the gate, a park.

Three figures, medians of ``--rounds`` rounds of ``--steps`` each, in one run:

- a step committed with its usage event (the Lua prelude now adds it to the record's
  totals) beside the same commit through scripts without that hook: the ratio is the
  price of ``runner status`` showing totals without reading the stream;
- the worker's gate per step (a check before the model call and the tool call, pricing
  the usage, folding the commit) beside that commit;
- one park → approve → claim cycle (park.lua, unpark.lua, claim.lua and the RQ push).

    python ops/bench_parking.py                 # the embedded server
    RUNNER_REDIS_URL=redis://host:6379/0 python ops/bench_parking.py --json

Everything lives under a private prefix that is deleted at the end.
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import time
from collections.abc import Callable

from runner import parking
from runner.bench.commits import step_events
from runner.client import Client, Submission
from runner.connection import connect, redis_url
from runner.events import Event, MessageEvent, Status, StatusEvent, UsageEvent
from runner.keys import Keys, new_run_id
from runner.parking import Park
from runner.settings import Settings
from runner.store import RunStore
from workers.gate import Gate
from workers.providers.base import Reply, ToolCall, Usage

HOOK = "elseif etype == 'usage' then add_usage(data) end"


def _without_hook(store: RunStore) -> RunStore:
    """The same store with the commit script's usage hook taken out of its prelude."""
    plain = RunStore(store.redis, store.keys, store.retention_ms // 1000)
    source = plain.script_sources()["commit"].replace(HOOK, "end")
    assert HOOK not in source
    plain._scripts["commit"] = store.redis.register_script(source)
    return plain


def _claimed(store: RunStore) -> tuple[str, int]:
    run_id = new_run_id()
    first = [StatusEvent(status=Status.QUEUED), MessageEvent(role="user", content="go")]
    store.create(run_id, {"queue": "bench-idle", "model": "scripted", "max_steps": "9"}, first)
    epoch = store.claim(run_id, "bench", 600)
    assert epoch is not None
    return run_id, epoch


def _commits(store: RunStore, steps: int) -> tuple[float, float]:
    """Median µs of one commit of a step and its usage event, and the server's µs per script.

    The server's own figure (``INFO commandstats``, reset first; nothing else may run
    scripts meanwhile) leaves out the round trip, which on a loaded machine is mostly noise.
    """
    run_id, epoch = _claimed(store)
    seen = len(store.events(run_id))
    usage = UsageEvent(input_tokens=1200, output_tokens=80, cost=0.0042)
    times = []
    store.redis.config_resetstat()
    for i in range(steps):
        events: list[Event] = [*step_events(i), usage]
        started = time.perf_counter()
        store.commit(run_id, epoch, events, seen, steps=1)
        times.append(time.perf_counter() - started)
        seen += len(events)
    server = float(store.redis.info("commandstats")["cmdstat_evalsha"]["usec_per_call"])
    return statistics.median(times) * 1e6, server


def _gate(settings: Settings, steps: int) -> float:
    """Median µs of the gate's work for one step (no I/O)."""
    gate = Gate(settings, 100_000)
    gate.model = "openai:gpt-4o"
    reply = Reply("thinking", [ToolCall("c1", "shell", {"command": "ls"})], Usage(1200, 80))
    messages = [{"role": "user", "content": "x" * 400}]
    times = []
    for i in range(steps):
        started = time.perf_counter()
        gate.before_model(i)
        gate.usage(reply, messages)
        gate.before_tool(reply.tool_calls[0])
        gate.add(step_events(i))
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e6


def _cycles(client: Client, rounds: int) -> float:
    """Median µs of park → approve → claim."""
    run_id = client.submit(Submission("go", script='{"steps": []}', queue="bench-idle"))
    store = client.store
    times = []
    for _ in range(rounds):
        epoch = store.claim(run_id, "bench", 600)
        assert epoch is not None
        started = time.perf_counter()
        parking.park(store, run_id, epoch, "bench", Park("needs approval", "approval", "c", "t"))
        client.approve(run_id)
        store.claim(run_id, "bench", 600)
        times.append(time.perf_counter() - started)
        store.finish(run_id, epoch + 1, Status.QUEUED)
    return statistics.median(times) * 1e6


def _median_of(fn: Callable[[], float], rounds: int) -> float:
    return statistics.median(fn() for _ in range(rounds))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    prefix = f"benchpark{secrets.token_hex(3)}"
    settings = Settings(prefix=prefix)
    url = redis_url(settings)
    settings = Settings(redis_url=url, prefix=prefix)
    redis = connect(settings, url=url)
    store = RunStore(redis, Keys(prefix), settings.retention_seconds)
    plain = _without_hook(store)
    client = Client(settings)
    try:
        hooked, unhooked = [], []
        for _ in range(args.rounds):  # interleaved, so load changes hit both alike
            hooked.append(_commits(store, args.steps))
            unhooked.append(_commits(plain, args.steps))
        with_totals = statistics.median(h[0] for h in hooked)
        without = statistics.median(u[0] for u in unhooked)
        server_with = statistics.median(h[1] for h in hooked)
        server_without = statistics.median(u[1] for u in unhooked)
        gate = _median_of(lambda: _gate(settings, args.steps), args.rounds)
        cycle = _median_of(lambda: _cycles(client, 50), args.rounds)
    finally:
        for key in redis.scan_iter(f"{prefix}:*", count=1000):
            redis.delete(key)
        for key in redis.scan_iter("rq:*bench-idle*", count=1000):
            redis.delete(key)
    figures = {
        "commit_with_usage_totals_us": round(with_totals, 1),
        "commit_without_us": round(without, 1),
        "usage_totals_ratio": round(with_totals / without, 3),
        "server_script_with_totals_us": round(server_with, 1),
        "server_script_without_us": round(server_without, 1),
        "server_usage_totals_ratio": round(server_with / server_without, 3),
        "gate_per_step_us": round(gate, 1),
        "gate_over_commit": round(gate / with_totals, 3),
        "park_approve_claim_us": round(cycle, 1),
    }
    if args.json:
        print(json.dumps(figures))
    else:
        for name, value in figures.items():
            print(f"{name:32} {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
