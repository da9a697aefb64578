"""MCP tool-call overhead: a call through runner's hub against the SDK's own call.

Starts the test MCP server (tests/mcp_server.py, the SDK's server side over stdio) twice
in one run and times ``echo`` calls, alternating between the two (so a loaded host's
swings hit both alike):

- floor: ``ClientSession.call_tool`` awaited directly on an event loop (the SDK alone);
- hub: ``run_tool("demo__echo", ...)`` from a plain thread, as a turn calls it: the hop
  to the hub's loop thread, the ping before the call, the effect id in ``_meta``, the
  capping and secret masking of the result. The server runs below runner's reaper.

Also the start of a server (spawn -> tools listed), through each path. Medians, with the
ratio hub / floor taken in the same run.

    .venv/bin/python ops/bench_mcp.py [--calls 200] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SERVER = str(ROOT / "tests" / "mcp_server.py")


def _hub(workspace: Path) -> tuple[Any, Any]:
    """A hub with the test server, and the context a turn would call it with."""
    from workers.stop import Stop
    from workers.tools import ToolContext
    from workers.tools.mcp import McpHub
    from workers.tools.mcp_config import ServerConfig

    stop = Stop(5)
    servers = {"demo": ServerConfig(command=sys.executable, args=[SERVER])}
    hub = McpHub(servers, workspace, {"PATH": "/usr/bin:/bin"}, stop)
    return hub, ToolContext(workspace, stop, 30, 16384, run_id="bench", extra=hub)


def _hub_call(ctx: Any, i: int) -> float:
    from workers.tools import run_tool

    started = time.perf_counter()
    out = run_tool("demo__echo", {"text": f"x{i}"}, ctx, f"call_{i}")
    took = time.perf_counter() - started
    if out.content != f"x{i}":
        raise SystemExit(f"unexpected result: {out.content[:200]}")
    return took


async def _both(calls: int, workspace: Path) -> dict[str, Any]:
    """Calls through the SDK alone and through the hub, alternating, in one run."""
    from mcp import ClientSession, StdioServerParameters, stdio_client

    from workers.tools import specs

    hub, ctx = _hub(workspace)
    params = StdioServerParameters(command=sys.executable, args=[SERVER])
    floor, through = [], []
    try:
        started = time.perf_counter()
        await asyncio.to_thread(specs, ctx)  # starts the hub's server, lists its tools
        hub_start = time.perf_counter() - started
        with tempfile.TemporaryFile("w+") as errlog:
            started = time.perf_counter()
            async with stdio_client(params, errlog=errlog) as (r, w), ClientSession(r, w) as s:
                await s.initialize()
                await s.list_tools()
                floor_start = time.perf_counter() - started
                for i in range(calls):
                    t = time.perf_counter()
                    await s.call_tool("echo", {"text": f"x{i}"})
                    floor.append(time.perf_counter() - t)
                    # From a thread of its own, as a turn calls it.
                    through.append(await asyncio.to_thread(_hub_call, ctx, i))
    finally:
        hub.close()
    return {
        "calls": calls,
        "floor_call_ms": statistics.median(floor) * 1000,
        "hub_call_ms": statistics.median(through) * 1000,
        "floor_start_s": floor_start,
        "hub_start_s": hub_start,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--json", action="store_true")
    opts = ap.parse_args()
    with tempfile.TemporaryDirectory() as ws:
        result = asyncio.run(_both(opts.calls, Path(ws)))
    result["call_ratio"] = result["hub_call_ms"] / result["floor_call_ms"]
    if opts.json:
        print(json.dumps(result))
        return
    print(
        f"MCP echo call, median of {opts.calls}: hub {result['hub_call_ms']:.2f} ms, "
        f"SDK alone {result['floor_call_ms']:.2f} ms, ratio {result['call_ratio']:.2f}"
    )
    hub_start, floor_start = result["hub_start_s"], result["floor_start_s"]
    print(f"server start to tools listed: hub {hub_start:.2f} s, SDK alone {floor_start:.2f} s")


if __name__ == "__main__":
    main()
