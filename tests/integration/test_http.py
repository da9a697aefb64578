"""Issue 15: ``runner serve`` as a real subprocess, driven over HTTP with httpx.

The server, the worker and ``runner serve`` are real processes on the test's own
Valkey; nothing sleeps to wait for a state.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Cli, Server
from tests.helpers import step_script, wait_for, write_script
from tests.serving import Api, make_api, sse_events

pytest.importorskip("starlette")


@pytest.fixture
def api(cli: Cli) -> Iterator[Api]:
    yield make_api(cli)


def follow_json(cli: Cli, run_id: str) -> list[str]:
    done = cli("follow", run_id, "--json")
    return [line for line in done.stdout.splitlines() if line.strip()]


def submit(api: Api, tmp_path: Path, steps: list[dict[str, Any]]) -> str:
    script = write_script(tmp_path / "script.json", steps).read_text()
    with api.http() as http:
        reply = http.post("/runs", json={"prompt": "go", "model": "scripted", "script": script})
    assert reply.status_code == 201, reply.text
    return str(reply.json()["id"])


def test_api_submit_follow_and_read(api: Api, cli: Cli, tmp_path: Path) -> None:
    cli.worker("w1")
    run_id = submit(api, tmp_path, step_script(2))
    with api.http() as http, http.stream("GET", f"/runs/{run_id}/events") as response:
        assert response.status_code == 200
        frames = sse_events(response)
    assert frames[-1]["event"] == "end"
    data = [f for f in frames if "id" in f]
    # Exactly what `runner follow --json` prints, with the stream id as the SSE id.
    assert [f["data"] for f in data] == follow_json(cli, run_id)
    assert all(json.loads(f["data"])["id"] == f["id"] for f in data)
    with api.http(api.reader) as http:
        assert http.get(f"/runs/{run_id}").json()["status"] == "succeeded"
        assert run_id in [r["id"] for r in http.get("/runs").json()["runs"]]
        messages = http.get(f"/runs/{run_id}/transcript").json()["openai"]
        assert messages[-1] == {"role": "assistant", "content": "All done."}
    with api.http() as http:
        ended = http.post(f"/runs/{run_id}/cancel")
        assert ended.status_code == 409 and "already ended" in ended.json()["error"]
        assert http.post(f"/runs/{run_id}/resume").status_code == 409
        only = http.post(f"/runs/{run_id}/send", json={"message": "hi", "continue": False})
        assert only.status_code == 409 and "takes no messages" in only.json()["error"]
        # To an ended run, send starts the next turn of its session (named after it).
        sent = http.post(f"/runs/{run_id}/send", json={"message": "hi"})
        assert sent.status_code == 201, sent.text
        assert (sent.json()["id"], sent.json()["session"]) == (run_id, run_id)
        turn = http.get(f"/runs/{sent.json()['next']}").json()
        assert (turn["session"], turn["status"]) == (run_id, "queued")


def test_api_refuses_and_touches_nothing(api: Api, server: Server, tmp_path: Path) -> None:
    before = server.client().dbsize()
    unknown = "r0000000000deadbeef"
    with httpx.Client(base_url=api.url, timeout=10) as anon:
        assert anon.get("/health").status_code == 200
        assert anon.get("/runs").status_code == 401
        assert anon.get("/runs", headers={"Authorization": "Bearer rt_nope"}).status_code == 401
        assert anon.get("/runs", headers={"Authorization": "Basic eDp5"}).status_code == 401
    with api.http(api.reader) as http:
        refused = http.post("/runs", json={"prompt": "go"})
        assert refused.status_code == 403 and "read-only" in refused.json()["error"]
        assert http.post(f"/runs/{unknown}/cancel").status_code == 403
        assert http.get(f"/runs/{unknown}").status_code == 404
        assert http.get(f"/runs/{unknown}/events").status_code == 404
        bad = http.get("/runs/..%2Fetc/transcript")
        assert bad.status_code in (400, 404) and "error" in bad.json()
        assert http.get("/runs/rNOTANID").status_code == 400
        assert http.get(f"/runs/{unknown}/events?after=zzz").status_code == 400
        assert http.get("/runs?status=bogus").status_code == 400
    with api.http() as http:
        huge = http.post("/runs", content=b"x" * (4 * 1024 * 1024))
        assert huge.status_code == 413 and "error" in huge.json()
        assert http.post("/runs", content=b"{not json").status_code == 400
        assert http.post("/runs", json={"prompt": 3}).status_code == 400
        assert http.post("/runs", json={"prompt": "p", "model": "nope:x"}).status_code == 400
        assert http.post(f"/runs/{unknown}/send", json={"message": "m"}).status_code == 404
    assert server.client().dbsize() == before
    log = Path(api.cli.tmp_path / f"serve-{api.port}.log").read_text()
    assert api.token not in log and api.reader not in log


def test_sse_resumes_across_a_serve_restart(api: Api, cli: Cli, tmp_path: Path) -> None:
    cli.worker("w1")
    run_id = submit(api, tmp_path, step_script(4, sleep=0.3))
    with api.http() as http, http.stream("GET", f"/runs/{run_id}/events") as response:
        first = sse_events(response, stop_after=4)  # mid-run: the turn goes on
    api.restart()
    seen = [f for f in first if "id" in f]
    with (
        api.http() as http,
        http.stream(
            "GET", f"/runs/{run_id}/events", headers={"Last-Event-ID": seen[-1]["id"]}
        ) as response,
    ):
        rest = sse_events(response)
    assert rest[-1]["event"] == "end"
    got = [f["data"] for f in seen] + [f["data"] for f in rest if "id" in f]
    assert got == follow_json(cli, run_id)  # every committed event, exactly once
    with (
        api.http() as http,
        http.stream("GET", f"/runs/{run_id}/events?after={seen[1]['id']}") as r,
    ):
        again = [f["data"] for f in sse_events(r) if "id" in f]
    assert again == got[2:]


def test_hundred_followers_share_one_reader(
    api: Api, cli: Cli, server: Server, tmp_path: Path
) -> None:
    run_id = submit(api, tmp_path, step_script(3, sleep=0.2))  # queued: no worker yet
    followers = 100
    attached: list[str] = []  # one entry per follower that has had its replay

    async def follow_all() -> list[list[str]]:
        limits = httpx.Limits(max_connections=followers + 5)
        headers = {"Authorization": f"Bearer {api.token}"}
        async with httpx.AsyncClient(
            base_url=api.url, headers=headers, limits=limits, timeout=60
        ) as http:

            async def one() -> list[str]:
                ids: list[str] = []
                async with http.stream("GET", f"/runs/{run_id}/events") as response:
                    async for line in response.aiter_lines():
                        if line.startswith("id:"):
                            ids.append(line[3:].strip())
                            if len(ids) == 1:
                                attached.append(run_id)
                        if line.startswith("event: end"):
                            break
                return ids

            tasks = [asyncio.create_task(one()) for _ in range(followers)]
            await asyncio.to_thread(blocked_readers_settle)
            return await asyncio.gather(*tasks)

    def blocked_readers_settle() -> None:
        redis = server.client()
        wait_for(lambda: len(attached) == followers, what="every follower to attach")
        wait_for(lambda: _xreads(redis) >= 1, what="the feed to block on the stream")
        assert _xreads(redis) == 1  # one blocked XREAD for a hundred followers
        # One shared pool: at most a connection per threadpool thread (40), not per follower.
        assert len(redis.client_list()) < 50
        cli.worker("w1")

    results = asyncio.run(follow_all())
    expected = [json.loads(line)["id"] for line in follow_json(cli, run_id)]
    assert all(ids == expected for ids in results)


def _xreads(redis: Any) -> int:
    return sum(1 for c in redis.client_list() if c.get("cmd") == "xread")


def test_token_commands_and_bind_refusal(cli: Cli, server: Server) -> None:
    made = cli("token", "create", "--name", "ci")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert made.stdout == token + "\n" and token.startswith("rt_")  # the token alone, once
    stored = server.client().hgetall("runner:auth:tokens")
    assert token not in str(stored) and len(stored) == 1  # only its sha256 is kept
    again = cli("token", "create", "--name", "ci")
    assert again.returncode == 2 and again.stderr.startswith("error: ")
    assert cli("token", "revoke", "ci").returncode == 0
    assert server.client().hlen("runner:auth:tokens") == 0
    assert cli("token", "revoke", "ci").returncode == 2
    assert cli("token", "create", "--name", "bad name!").returncode == 2
    refused = cli("serve", "--host", "0.0.0.0", "--port", "1")
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1 and "--insecure" in refused.stderr
    half = cli("serve", "--host", "0.0.0.0", "--certfile", "x.pem")
    assert half.returncode == 2


def test_revoked_token_is_refused_at_once(api: Api) -> None:
    with api.http() as http:
        assert http.get("/runs").status_code == 200
        assert api.cli("token", "revoke", "writer").returncode == 0
        assert http.get("/runs").status_code == 401


def test_sse_resumes_across_a_redis_restart(
    api: Api, cli: Cli, server: Server, tmp_path: Path
) -> None:
    cli.worker("w1")
    run_id = submit(api, tmp_path, step_script(4, sleep=0.3))
    with api.http() as http, http.stream("GET", f"/runs/{run_id}/events") as response:
        seen = [f for f in sse_events(response, stop_after=4) if "id" in f]
    server.kill()
    server.restart()
    rest: list[dict[str, Any]] = []

    def reconnect() -> bool:
        last = (rest or seen)[-1]["id"]
        with (
            api.http() as http,
            http.stream("GET", f"/runs/{run_id}/events", headers={"Last-Event-ID": last}) as r,
        ):
            if r.status_code == 503:  # the pool's old connections: a reconnecting client retries
                return False
            assert r.status_code == 200, r.read()
            frames = sse_events(r)
        rest.extend(f for f in frames if "id" in f)
        return frames[-1].get("event") == "end"

    wait_for(reconnect, timeout=60, interval=0.5, what="the stream to reach the end")
    got = [f["data"] for f in seen + rest]
    assert got == follow_json(cli, run_id)
    assert json.loads(got[-1])["status"] == "succeeded"


def test_heartbeats_and_the_feed_stops_when_its_followers_leave(
    cli: Cli, server: Server, tmp_path: Path
) -> None:
    api = make_api(cli, RUNNER_HTTP_HEARTBEAT_SECONDS="0.2")
    run_id = submit(api, tmp_path, step_script(1))  # no worker: it stays queued
    redis = server.client()
    with api.http() as http, http.stream("GET", f"/runs/{run_id}/events") as response:
        comments: list[str] = []
        for line in response.iter_lines():
            if line.startswith(":") and line != ": runner":
                comments.append(line)  # an SSE comment: proxies see traffic, EventSource ignores it
                if len(comments) == 2:
                    break
        wait_for(lambda: _xreads(redis) == 1, what="the feed to block on the stream")
    wait_for(lambda: _xreads(redis) == 0, what="the feed to stop once nobody follows")


def test_a_damaged_run_is_one_line_not_a_broken_stream(
    api: Api, server: Server, tmp_path: Path
) -> None:
    run_id = submit(api, tmp_path, step_script(1))
    server.client().delete(f"runner:run:{{{run_id}}}:events")
    with api.http() as http:
        with http.stream("GET", f"/runs/{run_id}/events") as response:
            frames = sse_events(response)
        assert frames[-1]["event"] == "problem"
        assert "damaged" in json.loads(frames[-1]["data"])["error"]
        reply = http.get(f"/runs/{run_id}/transcript")
        assert reply.status_code == 500 and "damaged" in reply.json()["error"]


def test_the_page_cookie_writes_only_as_json(api: Api, tmp_path: Path) -> None:
    run_id = submit(api, tmp_path, step_script(1))
    with httpx.Client(base_url=api.url, timeout=10) as browser:
        assert browser.post("/login", json={"token": "rt_wrong"}).status_code == 401
        assert browser.post("/login", json={"token": api.token}).status_code == 200
        assert browser.get(f"/runs/{run_id}").status_code == 200  # the cookie alone
        form = browser.post(f"/runs/{run_id}/cancel", content=b"a=b")  # as a form could
        assert form.status_code == 403
        assert browser.get(f"/runs/{run_id}").json()["status"] == "queued"
        assert browser.post(f"/runs/{run_id}/cancel", json={}).status_code == 200
        assert browser.post("/logout").status_code == 200
        assert browser.get(f"/runs/{run_id}").status_code == 401


def test_session_fork_and_purge_endpoints_refuse_and_touch_nothing(
    api: Api, server: Server, tmp_path: Path
) -> None:
    """Issue 14's endpoints: the status codes of every refusal, and no key changed."""
    run_id = submit(api, tmp_path, [{"content": "done"}])  # queued: no worker
    unknown = "r0000000000deadbeef"
    before = server.client().dbsize()
    with api.http(api.reader) as http:
        assert http.get("/sessions?limit=1").status_code == 200
        assert http.get("/sessions?limit=0").status_code == 400
        for path, body in (
            (f"/runs/{run_id}/fork", {"at": 1}),
            (f"/runs/{run_id}/purge", {}),
            ("/purge", {"older_than": 0}),
            ("/sessions/s1/rename", {"name": "s2"}),
            ("/sessions/s1/delete", {}),
        ):
            refused = http.post(path, json=body)
            assert refused.status_code == 403 and "read-only" in refused.json()["error"], path
    with httpx.Client(base_url=api.url, timeout=10) as anon:
        assert anon.post(f"/runs/{run_id}/purge", json={}).status_code == 401
    with api.http() as http:
        cases = [
            (f"/runs/{unknown}/fork", {"at": 1}, 404),
            (f"/runs/{unknown}/purge", {}, 404),
            (f"/runs/{run_id}/purge", {}, 409),  # not ended: cancel it first
            ("/runs/rNOTANID/fork", {"at": 1}, 400),
            ("/runs/rNOTANID/purge", {}, 400),
            (f"/runs/{run_id}/fork", {"at": "2"}, 400),
            (f"/runs/{run_id}/fork", {"at": 0}, 400),
            (f"/runs/{run_id}/fork", {"at": 1, "session": 5}, 400),
            ("/purge", {"older_than": -1}, 400),
            ("/purge", {}, 400),
            ("/sessions/bad%20name/rename", {"name": "x"}, 400),
            ("/sessions/nosuch/rename", {"name": "x"}, 400),
            ("/sessions/nosuch/rename", {"name": "bad name"}, 400),
            ("/sessions/nosuch/delete", {}, 400),
        ]
        for path, body, status in cases:
            reply = http.post(path, json=body)
            assert reply.status_code == status, (path, body, reply.text)
            assert reply.json()["error"].count("\n") == 0, path
        huge = http.post(f"/runs/{run_id}/fork", content=b"x" * (4 * 1024 * 1024))
        assert huge.status_code == 413, huge.text
        assert http.post("/sessions/s/rename", content=b"{nope").status_code == 400
    assert server.client().dbsize() == before
