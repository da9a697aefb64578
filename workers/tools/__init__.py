"""The agent's tools, behind a registry: a shell and file access, confined to the workspace.

Every tool answers with a :class:`ToolResult`; problems the model can act on (an unknown
tool, bad arguments, a path outside the workspace) come back as ``error: ...`` content
from :func:`run_tool` instead of raising, so the model sees them and carries on. Tools
are described to providers as neutral :class:`~workers.providers.base.ToolSpec` s.
"""

from __future__ import annotations

from typing import Any

from runner.errors import ToolError
from runner.redact import redact_secrets
from workers.providers.base import ToolSpec
from workers.tools.base import Tool, ToolContext, ToolResult, resolve_path
from workers.tools.files import ListDirTool, ReadFileTool, WriteFileTool
from workers.tools.shell import ShellTool

TOOLS: dict[str, Tool] = {}


def register(tool: Tool) -> Tool:
    """Make ``tool`` callable by the model (a later one of the same name replaces it)."""
    TOOLS[tool.name] = tool
    return tool


def get(name: str) -> Tool | None:
    """The registered tool ``name``, or None."""
    return TOOLS.get(name)


def specs() -> list[ToolSpec]:
    """Every registered tool as a neutral spec, in registration order."""
    return [ToolSpec(t.name, t.description, t.parameters) for t in TOOLS.values()]


for _tool in (ShellTool(), ReadFileTool(), WriteFileTool(), ListDirTool()):
    register(_tool)


def run_tool(name: str, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
    """Run tool ``name``; a refused or failed call becomes ``error: ...`` content.

    The worker's own secrets are masked in what the call returns, whatever the tool found
    (a tool runs as the worker's user and could read them from somewhere).
    """
    result = _run(name, args, ctx)
    masked = redact_secrets(result.content)
    return result if masked == result.content else ToolResult(masked, result.interrupted)


def _run(name: str, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
    tool = TOOLS.get(name)
    if tool is None:
        return ToolResult(f"error: unknown tool {name!r}; known tools: {', '.join(TOOLS)}")
    if not isinstance(args, dict):
        return ToolResult("error: arguments must be a JSON object")
    try:
        return tool.run(args, ctx)
    except ToolError as exc:
        return ToolResult(f"error: {exc}")
    except OSError as exc:
        # The file system said no (missing file, permissions...): the model can adapt.
        where = f": {args.get('path')}" if "path" in args else ""
        return ToolResult(f"error: {exc.strerror or exc}{where}")
    except UnicodeError as exc:
        return ToolResult(f"error: {exc}")


__all__ = [
    "TOOLS",
    "Tool",
    "ToolContext",
    "ToolError",
    "ToolResult",
    "ToolSpec",
    "get",
    "register",
    "resolve_path",
    "run_tool",
    "specs",
]
