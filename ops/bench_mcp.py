"""MCP tool-call overhead: a call through runner's hub against the SDK's own call.

Starts the test MCP server (tests/mcp_server.py, the SDK's server side over stdio) twice
in one run and times ``echo`` calls:

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


async def _floor(calls: int) -> tuple[float, list[float]]:
    from mcp import ClientSession, StdioServerParameters, stdio_client

    params = StdioServerParameters(command=sys.executable, args=[SERVER])
    started = time.perf_counter()
    times = []
    with tempfile.TemporaryFile("w+") as errlog:
        async with stdio_client(params, errlog=errlog) as (r, w), ClientSession(r, w) as s:
            await s.initialize()
            await s.list_tools()
            start_s = time.perf_counter() - started
            for i in range(calls):
                t = time.perf_counter()
                await s.call_tool("echo", {"text": f"x{i}"})
                times.append(time.perf_counter() - t)
    return start_s, times


def _hub(calls: int, workspace: Path) -> tuple[float, list[float]]:
    from workers.stop import Stop
    from workers.tools import ToolContext, run_tool, specs
    from workers.tools.mcp import McpHub
    from workers.tools.mcp_config import ServerConfig

    stop = Stop(5)
    servers = {"demo": ServerConfig(command=sys.executable, args=[SERVER])}
    hub = McpHub(servers, workspace, {"PATH": "/usr/bin:/bin"}, stop)
    ctx = ToolContext(workspace, stop, 30, 16384, run_id="bench", extra=hub)
    try:
        started = time.perf_counter()
        specs(ctx)
        start_s = time.perf_counter() - started
        times = []
        for i in range(calls):
            t = time.perf_counter()
            out = run_tool("demo__echo", {"text": f"x{i}"}, ctx, f"call_{i}")
            times.append(time.perf_counter() - t)
            if out.content != f"x{i}":
                raise SystemExit(f"unexpected result: {out.content[:200]}")
    finally:
        hub.close()
    return start_s, times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--json", action="store_true")
    opts = ap.parse_args()
    floor_start, floor = asyncio.run(_floor(opts.calls))
    with tempfile.TemporaryDirectory() as ws:
        hub_start, hub = _hub(opts.calls, Path(ws))
    result: dict[str, Any] = {
        "calls": opts.calls,
        "floor_call_ms": statistics.median(floor) * 1000,
        "hub_call_ms": statistics.median(hub) * 1000,
        "floor_start_s": floor_start,
        "hub_start_s": hub_start,
    }
    result["call_ratio"] = result["hub_call_ms"] / result["floor_call_ms"]
    if opts.json:
        print(json.dumps(result))
        return
    print(
        f"MCP echo call, median of {opts.calls}: hub {result['hub_call_ms']:.2f} ms, "
        f"SDK alone {result['floor_call_ms']:.2f} ms, ratio {result['call_ratio']:.2f}"
    )
    print(f"server start to tools listed: hub {hub_start:.2f} s, SDK alone {floor_start:.2f} s")


if __name__ == "__main__":
    main()
