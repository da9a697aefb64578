"""What every tool shares: its result, its context, the Tool base class, argument helpers.

Problems the model can act on (bad arguments, a path outside the workspace) raise
:class:`runner.errors.ToolError`; the registry turns them into ``error: ...`` content.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

from runner.errors import ToolError
from workers.stop import Stop
from workers.tools.env import default_tool_env


@dataclass(frozen=True)
class ToolResult:
    """What a tool call produced, as the model will read it."""

    content: str
    interrupted: bool = False  # killed by a stop (handoff/cancel) before it finished


@dataclass
class ToolContext:
    """Where a tool runs, the limits it runs under, and the environment it gets.

    ``env`` defaults to the clean tool environment of this process's settings
    (:func:`workers.tools.env.tool_env`): never the worker's own.
    """

    workspace: Path
    stop: Stop
    timeout: float
    output_bytes: int
    env: Mapping[str, str] = field(default_factory=default_tool_env)
    # Live output (issue 12): where a long-running tool reports that it still runs.
    progress: Callable[[str], None] | None = None
    progress_after: float = 3.0

    def environment(self) -> dict[str, str]:
        """The environment a command of this call runs with (HOME is the workspace)."""
        return {**self.env, "HOME": str(self.workspace), "PWD": str(self.workspace)}


class Tool(ABC):
    """One tool the model may call; ``parameters`` is its JSON schema."""

    name: ClassVar[str]
    idempotent: ClassVar[bool]
    description: ClassVar[str]
    parameters: ClassVar[dict[str, Any]]

    @abstractmethod
    def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        """Run the call; raise :class:`ToolError` for a refused call."""


def str_arg(args: dict[str, Any], name: str, default: str | None = None) -> str:
    """Argument ``name`` as a string; ToolError if it is missing or not a string."""
    value = args.get(name, default)
    if value is None:
        raise ToolError(f"missing argument {name!r}")
    if not isinstance(value, str):
        raise ToolError(f"argument {name!r} must be a string, not {type(value).__name__}")
    return value


def check_args(args: dict[str, Any], allowed: set[str]) -> None:
    """Refuse arguments the tool does not know, so a typo does not pass silently."""
    unknown = sorted(set(args) - allowed)
    if unknown:
        raise ToolError(f"unknown argument(s): {', '.join(unknown)}")


def cap(data: bytes, limit: int, total: int | None = None) -> str:
    """Decode the first ``limit`` bytes and say how many were trimmed."""
    total = len(data) if total is None else total
    text = data[:limit].decode("utf-8", errors="replace")
    if total > limit:
        text += f"\n[... {total - limit} bytes trimmed]"
    return text


def resolve_path(workspace: Path, raw: str) -> Path:
    """The real path ``raw`` names inside ``workspace``; ToolError if it may leave it.

    Absolute paths and ``..`` are refused outright; symlinks are resolved and the result
    must still lie inside the workspace's real path.
    """
    if not raw or "\x00" in raw:
        raise ToolError("path must be a non-empty string without NUL bytes")
    pure = PurePosixPath(raw)
    if pure.is_absolute():
        raise ToolError(f"absolute path {raw!r} refused: use a path relative to the workspace")
    if ".." in pure.parts:
        raise ToolError(f"path {raw!r} refused: '..' is not allowed")
    root = os.path.realpath(workspace)
    real = os.path.realpath(os.path.join(root, raw))
    if real != root and not real.startswith(root + os.sep):
        raise ToolError(f"path {raw!r} refused: it resolves outside the workspace")
    return Path(real)
