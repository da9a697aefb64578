"""The agent's tools, behind a registry: built-ins, user tools, and an attempt's MCP servers.

Every tool answers with a :class:`ToolResult`; problems the model can act on (an unknown
tool, bad arguments, a path outside the workspace, a tool that raised, an MCP server that
died) come back as ``error: ...`` content from :func:`run_tool` instead of raising, so the
model sees them and carries on. Tools are described to providers as neutral
:class:`~workers.providers.base.ToolSpec` s.

The registry holds the built-ins and the user tools (``RUNNER_TOOLS`` and the
``runner.tools`` entry points, loaded once per process by :func:`load_tools`); its public
view :data:`TOOLS` is read-only. An attempt's MCP servers are a
:class:`~workers.tools.base.ToolSource` on its :class:`ToolContext` (``extra``):
:func:`specs`, :func:`get` and :func:`run_tool` look there after the registry.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from types import MappingProxyType
from typing import Any

from runner.errors import BadInput, ToolError
from runner.redact import redact_secrets
from runner.settings import Settings, get_settings
from workers.providers.base import ToolSpec
from workers.stop import Stop
from workers.tools.base import Tool, ToolContext, ToolResult, ToolSource, resolve_path
from workers.tools.edit import EditFileTool
from workers.tools.env import default_tool_env
from workers.tools.files import ListDirTool, ReadFileTool, WriteFileTool
from workers.tools.output import fit
from workers.tools.shell import ShellTool
from workers.tools.user import tool

log = logging.getLogger("runner.tools")
_registry: dict[str, Tool] = {}
TOOLS = MappingProxyType(_registry)  # name -> tool, read-only; register() adds
# Room over the output cap for a tool's own notes ("[... N bytes trimmed]").
_NOTE_ROOM = 1024
_loaded: list[bool] = []


def register(tool: Tool) -> Tool:
    """Make ``tool`` callable by the model (a later one of the same name replaces it)."""
    if tool.name in _registry and _registry[tool.name] is not tool:
        log.warning("tool %s replaced", tool.name, extra={"tool": tool.name})
    _registry[tool.name] = tool
    return tool


def unregister(name: str) -> None:
    """Forget tool ``name`` (tests that register their own)."""
    _registry.pop(name, None)


def load_tools(settings: Settings | None = None) -> None:
    """Register the user tools and check the MCP configuration, once per process.

    A worker calls it at start, so a name that does not import or a bad MCP file stops
    it with one line (BadInput) instead of failing every turn; its work horses inherit
    what it loaded.
    """
    if _loaded:
        return
    cfg = settings or get_settings()
    from workers.tools import user

    for found in user.load(cfg.tools):
        register(found)
    if cfg.mcp_config is not None:
        from workers.tools.mcp import require_sdk
        from workers.tools.mcp_config import load_config

        load_config(cfg.mcp_config)
        require_sdk()
    _loaded.append(True)


def mcp_servers(
    settings: Settings, workspace: Path, stop: Stop, note: Callable[[str], None] | None = None
) -> ToolSource | None:
    """The MCP servers of one attempt (started on first use), or None if none is configured."""
    if settings.mcp_config is None:
        return None
    from workers.tools.mcp import McpHub
    from workers.tools.mcp_config import load_config

    try:
        servers = load_config(settings.mcp_config)  # read again: it may have been edited
        env = {**default_tool_env(), "HOME": str(workspace), "PWD": str(workspace)}
        return McpHub(servers, workspace, env, stop, note)
    except BadInput as exc:
        # Checked when the worker started; broken since. The turn goes on without them.
        log.warning("mcp servers not started", extra={"error": str(exc)})
        if note is not None:
            note(f"MCP servers not started: {exc}")
        return None


def get(name: str, ctx: ToolContext | None = None) -> Tool | None:
    """The tool ``name``: registered, or one of the attempt's MCP servers'; else None."""
    found = _registry.get(name)
    if found is None and ctx is not None and ctx.extra is not None:
        found = ctx.extra.get(name)
    return found


def specs(ctx: ToolContext | None = None) -> list[ToolSpec]:
    """Every tool as a neutral spec: built-ins, user tools, then MCP servers' tools."""
    listed = [t.spec() for t in _registry.values()]
    if ctx is not None and ctx.extra is not None:
        listed += [s for s in ctx.extra.specs() if s.name not in _registry]
    return listed


for _tool in (ShellTool(), ReadFileTool(), WriteFileTool(), EditFileTool(), ListDirTool()):
    register(_tool)


def run_tool(name: str, args: dict[str, Any], ctx: ToolContext, call_id: str = "") -> ToolResult:
    """Run tool ``name``; a refused or failed call becomes ``error: ...`` content.

    ``call_id`` (the model's tool call id) sets the call's effect id. What the call
    returns is capped (a tool's own notes aside) and stays valid UTF-8, and the worker's
    own secrets are masked in it, whatever the tool found (a tool runs as the worker's
    user and could read them from somewhere).
    """
    if call_id:
        ctx = ctx.for_call(call_id)
    result = _run(name, args, ctx)
    content = redact_secrets(fit(result.content, ctx.output_bytes + _NOTE_ROOM))
    return result if content == result.content else ToolResult(content, result.interrupted)


def _run(name: str, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
    found = get(name, ctx)
    if found is None:
        known = ", ".join(s.name for s in specs(ctx))
        return ToolResult(f"error: unknown tool {name!r}; known tools: {known}")
    if not isinstance(args, dict):
        return ToolResult("error: arguments must be a JSON object")
    try:
        result = found.run(args, ctx)
    except ToolError as exc:
        return ToolResult(f"error: {exc}")
    except OSError as exc:
        # The file system said no (missing file, permissions...): the model can adapt.
        where = f": {args.get('path')}" if "path" in args else ""
        return ToolResult(f"error: {exc.strerror or exc}{where}")
    except UnicodeError as exc:
        return ToolResult(f"error: {exc}")
    except Exception as exc:
        # A tool's own bug (a user tool, say) is the model's to hear about, not the turn's end.
        log.warning("tool raised", extra={"tool": name, "error": f"{type(exc).__name__}: {exc}"})
        return ToolResult(f"error: tool {name} raised {type(exc).__name__}: {exc}")
    if not isinstance(result, ToolResult):
        return ToolResult(f"error: tool {name} returned a {type(result).__name__}, not a result")
    return result


__all__ = [
    "TOOLS",
    "Tool",
    "ToolContext",
    "ToolError",
    "ToolResult",
    "ToolSource",
    "ToolSpec",
    "get",
    "load_tools",
    "mcp_servers",
    "register",
    "resolve_path",
    "run_tool",
    "specs",
    "tool",
    "unregister",
]
