"""A small MCP server for the tests (stdio, the SDK's own server side).

``whoami`` reports what a server process of a turn sees (its directory, its pid, the
effect id in the request's ``_meta``, its environment); ``hang`` writes its pid to
``hang.pid`` in its directory and sleeps, so a test can kill it mid-call; ``fail``
answers with a tool error.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("demo")


@server.tool()
def whoami(note: str, ctx: Context) -> str:
    """Where this server runs and what it was told."""
    meta = ctx.request_context.meta or {}
    effect = meta.get("runner/effect_id")
    report: dict[str, Any] = {
        "note": note,
        "cwd": os.getcwd(),
        "pid": os.getpid(),
        "effect_id": effect,
        "flag": os.environ.get("DEMO_FLAG"),
        "runner_vars": sorted(k for k in os.environ if k.startswith("RUNNER_")),
    }
    return json.dumps(report)


@server.tool()
def echo(text: str) -> str:
    """Return the text (for ops/bench_mcp.py)."""
    return text


@server.tool()
def hang(seconds: float = 120) -> str:
    """Write this process's pid to hang.pid, then sleep."""
    with open("hang.pid.tmp", "w") as f:
        f.write(str(os.getpid()))
    os.replace("hang.pid.tmp", "hang.pid")
    time.sleep(seconds)
    return "woke up"


@server.tool()
def fail(why: str) -> str:
    """Always fails, as a tool error the model reads."""
    raise ToolError(f"refused: {why}")


if __name__ == "__main__":
    server.run("stdio")
