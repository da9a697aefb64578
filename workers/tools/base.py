"""What every tool shares: its result, its context, the Tool base class, argument helpers.

Problems the model can act on (bad arguments, a path outside the workspace) raise
:class:`runner.errors.ToolError`; the registry turns them into ``error: ...`` content.
"""

from __future__ import annotations

import dataclasses
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar, Protocol

from runner.errors import ToolError
from workers.providers.base import ToolSpec
from workers.stop import Stop
from workers.tools.env import default_tool_env
from workers.tools.output import bytes_text


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
    run_id: str = ""
    # ``run id : tool call id`` of the call being run (issue 13): the same on a re-run of
    # that call after a handoff, so a tool with side effects can make them idempotent.
    effect_id: str = ""
    # Tools of this attempt besides the registry's: the MCP servers' (workers.tools.mcp).
    extra: ToolSource | None = None

    def for_call(self, call_id: str) -> ToolContext:
        """This context for one tool call: its effect id set."""
        return dataclasses.replace(self, effect_id=f"{self.run_id}:{call_id}")

    def environment(self) -> dict[str, str]:
        """The environment a command of this call runs with (HOME is the workspace)."""
        env = {**self.env, "HOME": str(self.workspace), "PWD": str(self.workspace)}
        if self.effect_id:
            env["RUNNER_EFFECT_ID"] = self.effect_id
        return env

    def note(self, text: str) -> None:
        """Tell followers something about this call (a delta note); never raises."""
        if self.progress is not None:
            self.progress(text)

    def close(self) -> None:
        """Stop what this attempt started for its tools (MCP servers); idempotent."""
        if self.extra is not None:
            self.extra.close()


class Tool(ABC):
    """One tool the model may call; ``parameters`` is its JSON schema.

    ``idempotent``: a call cut off by a handoff or a crash is run again on resume (else
    the model is told it may or may not have taken effect). ``approval``: the run parks
    until a person approves each call (read as ``getattr(tool, "approval", False)``).
    All are class attributes: a tool made at run time (a user's function, an MCP
    server's tool) is an instance of a subclass made for it (:func:`tool_class`).
    """

    name: ClassVar[str]
    description: ClassVar[str]
    parameters: ClassVar[dict[str, Any]]
    idempotent: ClassVar[bool] = False
    approval: ClassVar[bool] = False

    @abstractmethod
    def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        """Run the call; raise :class:`ToolError` for a refused call."""

    def spec(self) -> ToolSpec:
        """This tool as a provider-neutral spec."""
        return ToolSpec(self.name, self.description, self.parameters)


def tool_class(
    base: type[Tool],
    name: str,
    description: str,
    parameters: dict[str, Any],
    idempotent: bool = False,
    approval: bool = False,
    **attrs: Any,
) -> type[Tool]:
    """A subclass of ``base`` describing one tool made at run time."""
    fields = {
        "name": name,
        "description": description,
        "parameters": parameters,
        "idempotent": idempotent,
        "approval": approval,
        **attrs,
    }
    return type(f"{base.__name__}[{name}]", (base,), fields)


class ToolSource(Protocol):
    """Tools that come and go with an attempt (an MCP server's), beside the registry's."""

    def specs(self) -> list[ToolSpec]:
        """The tools to offer the model now."""
        ...

    def get(self, name: str) -> Tool | None:
        """The tool ``name``, or None if this source has none of that name."""
        ...

    def close(self) -> None:
        """Stop whatever the source started."""
        ...


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
    """The first ``limit`` bytes as text, saying how many were trimmed (binary: described)."""
    return bytes_text(data, limit, total)


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
