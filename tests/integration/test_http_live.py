"""Issue 15: what ``runner serve`` streams besides committed events: deltas, the live runs
list, and the workspace diff. Real server, worker and ``runner serve`` processes."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Cli, Server
from tests.helpers import write_script
from tests.serving import Api, make_api, sse_frames

pytest.importorskip("starlette")


@pytest.fixture
def api(cli: Cli) -> Iterator[Api]:
    yield make_api(cli)


def submit(api: Api, tmp_path: Path, steps: list[dict[str, Any]]) -> str:
    script = write_script(tmp_path / "script.json", steps).read_text()
    with api.http() as http:
        reply = http.post("/runs", json={"prompt": "go", "model": "scripted", "script": script})
    assert reply.status_code == 201, reply.text
    return str(reply.json()["id"])


def committed_lines(cli: Cli, run_id: str) -> list[str]:
    done = cli("follow", run_id, "--json")
    return [line for line in done.stdout.splitlines() if '"ephemeral"' not in line]


def test_deltas_arrive_before_the_commit_and_resume_stays_exact(
    api: Api, cli: Cli, tmp_path: Path
) -> None:
    first, second = "first " * 40, "second " * 40
    steps = [
        {"content": first, "tool": "shell", "args": {"command": "echo a"}, "sleep": 1.5},
        {"content": second, "sleep": 3},
    ]
    run_id = submit(api, tmp_path, steps)
    cli.worker("w1")
    before: list[dict[str, Any]] = []
    with api.http() as http, http.stream("GET", f"/runs/{run_id}/events") as response:
        for frame in sse_frames(response):
            before.append(frame)
            if "id" in frame and json.loads(frame["data"]).get("role") == "assistant":
                break  # the first answer is committed: leave mid-run
    deltas = [json.loads(f["data"]) for f in before if "id" not in f]
    assert deltas, "no delta arrived before the answer was committed"
    assert all(d["type"] == "delta" and d["ephemeral"] is True for d in deltas)
    streamed = "".join(d["text"] for d in deltas if d["kind"] == "text")
    assert streamed and first.startswith(streamed)
    last = [f for f in before if "id" in f][-1]["id"]
    with (
        api.http() as http,
        http.stream("GET", f"/runs/{run_id}/events", headers={"Last-Event-ID": last}) as r,
    ):
        after = list(sse_frames(r))
    assert after[-1]["event"] == "end"
    later = [json.loads(f["data"]) for f in after if "id" not in f and "event" not in f]
    assert any(d["kind"] == "text" and d["text"] in second for d in later)  # the 2nd answer
    got = [f["data"] for f in before + after if "id" in f]
    assert got == committed_lines(cli, run_id)  # every committed event, exactly once
    # The CLI through the API prints the same deltas as over Redis (follow --json).
    remote = {**cli.env, "RUNNER_API_URL": api.url, "RUNNER_API_TOKEN": api.token}
    replay = cli("follow", run_id, "--json", env=remote)
    assert replay.returncode == 0
    assert replay.stdout.splitlines() == committed_lines(cli, run_id)


def test_the_runs_list_streams_changes_from_one_poll(
    api: Api, server: Server, tmp_path: Path
) -> None:
    redis = server.client()  # no worker: nothing but these requests touches the index
    old = submit(api, tmp_path, [{"content": "done"}])
    watchers = 5
    with api.http() as http:
        streams = [http.stream("GET", "/runs/live?limit=10") for _ in range(watchers)]
        frames = [sse_frames(s.__enter__()) for s in streams]
        try:
            for each in frames:
                listed = next(each)
                assert listed["event"] == "list"
                assert [r["id"] for r in json.loads(listed["data"])["runs"]] == [old]
            polls_before, started = _calls(redis, "zrangebyscore"), time.monotonic()
            new = submit(api, tmp_path, [{"content": "done"}])
            assert http.post(f"/runs/{new}/cancel").status_code == 200
            for each in frames:  # every page hears of the new run, then of its cancel
                statuses: list[str] = []
                while "cancelled" not in statuses:
                    frame = next(each)
                    assert frame.get("event") == "changed", frame
                    runs = json.loads(frame["data"])["runs"]
                    assert [r["id"] for r in runs] == [new]  # only what moved is sent
                    statuses += [r["status"] for r in runs]
            elapsed = time.monotonic() - started
            polls = _calls(redis, "zrangebyscore") - polls_before
            # One poll a second for all five pages together, not one each.
            assert 1 <= polls <= elapsed + 2, (polls, elapsed)
        finally:
            for s in streams:
                s.__exit__(None, None, None)


def _calls(redis: Any, command: str) -> int:
    stats = redis.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


def test_the_diff_of_a_runs_workspace(api: Api, cli: Cli, tmp_path: Path) -> None:
    steps = [
        {"content": "w", "tool": "write_file", "args": {"path": "notes.txt", "content": "hi\n"}},
        {"content": "done"},
    ]
    cli.worker("w1")
    run_id = submit(api, tmp_path, steps)
    assert cli("follow", run_id).returncode == 0
    with api.http(api.reader) as http:
        reply = http.get(f"/runs/{run_id}/diff")
        assert reply.status_code == 200
        assert reply.json()["diff"] == cli("diff", run_id).stdout
        assert "+hi" in reply.json()["diff"]
        assert http.get("/runs/r0000000000deadbeef/diff").status_code == 404
    with httpx.Client(base_url=api.url, timeout=10) as anon:
        assert anon.get(f"/runs/{run_id}/diff").status_code == 401
