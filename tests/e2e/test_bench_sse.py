"""Issue 15's bench section: SSE latency beside `runner follow`, and 100 followers."""

from __future__ import annotations

import os

import pytest

from runner.bench.context import Bench, Plan
from runner.bench.sse import FOLLOWERS, sse_latency
from runner.settings import Settings
from tests.conftest import Server

pytest.importorskip("starlette")


@pytest.mark.slow
def test_sse_bench_section(
    env: dict[str, str], server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    bench = Bench(
        Settings(redis_url=server.url, data_dir=env["RUNNER_DATA_DIR"]), Plan.make(True), print
    )
    try:
        single, many = sse_latency(bench)
    finally:
        bench.close()
        for proc in bench.procs:  # the follow section's pipe (its reader thread is done)
            if proc.stdout is not None:
                proc.stdout.close()
    print(single.as_dict(), many.as_dict())
    assert single.value.n == bench.plan.follow_samples and single.floor.median > 0
    assert many.value.n == FOLLOWERS * bench.plan.follow_samples
    assert many.extra["cpu_per_event_s"] > 0
    assert os.environ["RUNNER_REDIS_URL"] == server.url
