"""A worker's /metrics on RUNNER_METRICS_PORT moves through a turn with a handoff and a
crash, counted in the forked work horses (issue 16.1)."""

from __future__ import annotations

import os
import signal
import socket
import urllib.request

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import horse_pids, wait_for, write_script
from tests.serving import make_api, sse_frames


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_count_a_turn_with_a_handoff_and_a_crash(cli, env, store, tmp_path) -> None:
    port = free_port()
    worker = cli.worker("mw", env={**env, "RUNNER_METRICS_PORT": str(port)})
    first = scrape(port)
    assert value(first, "runner_handoffs_total", queue="default") == 0
    assert ("runner_queue_depth", (("queue", "default"),)) in first  # read at scrape time
    steps = [
        {"content": "one", "tool": "shell", "args": {"command": "echo a > a.txt"}},
        {"content": "thinking", "sleep": 3},
    ]
    script = write_script(tmp_path / "s.json", steps)
    run_id = cli.submit("--model", "scripted", "--script", str(script), "hi")
    wait_for(lambda: store.get(run_id).steps >= 2, 20, what="the tool result committed")
    (horse,) = horse_pids(worker.pid)  # thinking for 3 s
    os.kill(horse, signal.SIGUSR1)  # what the worker sends its horse on SIGTERM: hand off
    assert cli("follow", run_id).returncode == 0  # handed off, then finished by a new horse

    crash = write_script(tmp_path / "c.json", [{"content": "boom", "crash": True}])
    crashed = cli.submit("--model", "scripted", "--script", str(crash), "crash")
    assert cli("follow", crashed).returncode == 4  # a crash loop: suspended

    samples = wait_for(
        lambda: (s := scrape(port)) and value(s, "runner_dirty_restarts_total") >= 3 and s,
        10,
        what="the crash loop counted",
    )
    assert value(samples, "runner_handoffs_total", queue="default") == 1
    # Back in the queue: the handoff (its horse) and three crashes (the worker's requeues).
    assert value(samples, "runner_runs_total", status="queued", queue="default") == 4
    assert value(samples, "runner_runs_total", status="succeeded", queue="default") == 1
    assert value(samples, "runner_runs_total", status="suspended", queue="default") == 1
    assert value(samples, "runner_steps_committed_total", queue="default") >= 3
    assert value(samples, "runner_commit_seconds_count") >= 3
    assert value(samples, "runner_step_seconds_count", queue="default") >= 3
    # Calls that returned: the first, and the one the new horse made after the handoff.
    assert value(samples, "runner_model_call_seconds_count", model="scripted") == 2
    assert value(samples, "runner_dirty_restarts_total") == 3
    assert value(samples, "runner_fenced_writes_total") == 0
    # One checkpoint stored new contents: a.txt, two bytes ("a\n").
    assert value(samples, "runner_workspace_checkpoint_bytes_count") == 1
    assert value(samples, "runner_workspace_checkpoint_bytes_sum") == 2
    # Runs by status now, from the index: the suspended one is visible as such.
    now = wait_for(
        lambda: (
            (s := scrape(port)) and value(s, "runner_runs_by_status", status="suspended") == 1 and s
        ),
        20,
        what="the suspended run in runs by status",
    )
    assert value(now, "runner_runs_by_status", status="succeeded") == 1
    assert value(now, "runner_runs_by_status", status="running") == 0
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0


def test_serve_metrics_count_requests_and_followers(cli, env, tmp_path) -> None:
    port = free_port()
    api = make_api(cli, RUNNER_METRICS_PORT=str(port))
    script = write_script(tmp_path / "s.json", [{"content": "done"}])
    run_id = cli.submit("--model", "scripted", "--script", str(script), "hi")  # no worker
    with api.http() as http:
        assert http.get(f"/runs/{run_id}").status_code == 200
        assert http.get(f"/runs/{run_id}").status_code == 200
        with httpx.Client(base_url=api.url, timeout=10) as anon:
            assert anon.get("/runs").status_code == 401
        with http.stream("GET", f"/runs/{run_id}/events") as response:
            frames = sse_frames(response)
            assert "id" in next(frames)  # the replay has begun: this follower is counted
            during = wait_for(
                lambda: (s := scrape(port)) and value(s, "runner_sse_followers") == 1 and s,
                20,
                what="one SSE follower counted",
            )
    assert value(during, "runner_sse_feeds") == 1
    assert value(during, "runner_http_requests_total", endpoint="status", code="200") == 2
    assert value(during, "runner_http_requests_total", endpoint="list_runs", code="401") == 1
    assert value(during, "runner_sse_events_total", kind="committed") >= 1
    assert value(during, "runner_runs_by_status", status="queued") == 1
    after = wait_for(
        lambda: (s := scrape(port)) and value(s, "runner_sse_followers") == 0 and s,
        20,
        what="the follower gone",
    )
    assert value(after, "runner_http_requests_total", endpoint="events", code="200") == 1
