"""Section "sse": commit → an SSE follower received it, and a hundred followers of one run.

Needs the serve extra (httpx, starlette, uvicorn, sse-starlette). A ``runner serve``
process runs on the bench's server; the followers are asyncio streams in this process,
so commit and receipt are stamped on one clock. The serve process's CPU time over the
hundred-follower phase, divided by the events it delivered, is its cost per event.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from typing import Any

from runner.bench.commits import Transcript
from runner.bench.context import RUNNER, Bench
from runner.bench.follow import _follow_samples
from runner.bench.stats import Figure, Spread
from runner.client import Client
from runner.errors import BenchError
from runner.events import MessageEvent

FOLLOWERS = 100


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _wait_up(http: Any, deadline: float) -> None:
    import httpx

    while time.monotonic() < deadline:
        try:
            if (await http.get("/health")).status_code == 200:
                return
        except httpx.TransportError:
            pass  # not listening yet
        await asyncio.sleep(0.1)
    raise BenchError("runner serve did not answer /health")


async def _measure(b: Bench, url: str, token: str, followers: int, n: int) -> list[float]:
    """Latencies (s) from commit to receipt, for every follower and every commit."""
    import httpx

    tr = Transcript.start(b)
    base = tr.seen  # events before the first probe (tr.seen grows with each commit)
    got: dict[int, list[float]] = {}
    attached = asyncio.Semaphore(0)
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=followers + 5)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=60) as http:
        await _wait_up(http, time.monotonic() + 30)

        async def follow() -> None:
            seen = 0
            async with http.stream("GET", f"/runs/{tr.run_id}/events") as reply:
                async for line in reply.aiter_lines():
                    if line.startswith("event: end"):
                        return
                    if not line.startswith("id:"):
                        continue
                    seen += 1
                    if seen == base:
                        attached.release()
                    elif seen > base:
                        got.setdefault(seen, []).append(time.perf_counter())

        tasks = [asyncio.create_task(follow()) for _ in range(followers)]
        for _ in range(followers):
            await asyncio.wait_for(attached.acquire(), 60)
        lat: list[float] = []
        for i in range(1, n + 1):
            t0 = time.perf_counter()
            await asyncio.to_thread(tr.commit, [MessageEvent(role="assistant", content="probe")])
            while len(got.get(base + i, [])) < followers:
                await asyncio.sleep(0.001)
            lat.extend(stamp - t0 for stamp in got[base + i])
        await asyncio.to_thread(tr.finish)
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
    return lat


def sse_latency(b: Bench) -> list[Figure]:
    """SSE commit → received, one follower and a hundred, beside ``runner follow``."""
    from runner.http.auth import Tokens

    token = Tokens(Client(b.settings)).create(b.name("sse"))
    port = _free_port()
    proc = b.spawn([*RUNNER, "serve", "--port", str(port)], "serve.log")
    url = f"http://127.0.0.1:{port}"
    n = b.plan.follow_samples
    cli = Spread.of(_follow_samples(b))
    one = Spread.of(asyncio.run(_measure(b, url, token, 1, n)))
    cpu0 = _cpu_seconds(proc.pid)
    many = asyncio.run(_measure(b, url, token, FOLLOWERS, n))
    cpu = (_cpu_seconds(proc.pid) - cpu0) / (FOLLOWERS * (n + 1))
    proc.terminate()
    note = "commit → an SSE client of `runner serve` got it, vs → `runner follow --json` printed it"
    return [
        Figure("SSE p50", "s", one, "`runner follow` p50", cli, stat="p50", note=note),
        Figure(
            f"SSE p99, {FOLLOWERS} followers of one run",
            "s",
            Spread.of(many),
            "SSE p99, one follower",
            one,
            stat="p99",
            note=f"serve CPU per delivered event: {cpu * 1e6:.0f} µs",
            extra={"cpu_per_event_s": cpu},
        ),
    ]
