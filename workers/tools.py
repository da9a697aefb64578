"""The agent's tools: a shell and file access, confined to the run's workspace.

Every tool answers with a :class:`ToolResult`; problems the model can act on (an unknown
tool, bad arguments, a path outside the workspace) come back as ``error: ...`` content
from :func:`run_tool` instead of raising, so the model sees them and carries on.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import selectors
import signal
import stat
import subprocess
import sys
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any, ClassVar

from runner.errors import RunnerError
from runner.settings import Settings
from workers.stop import Stop

# How long the shell supervisor sleeps between checks of its deadlines.
_POLL_SECONDS = 0.1
_READ_CHUNK = 64 * 1024


@dataclass(frozen=True)
class ToolResult:
    """What a tool call produced, as the model will read it."""

    content: str
    interrupted: bool = False  # killed by a stop (handoff/cancel) before it finished


class ToolError(RunnerError):
    """The tool call was refused."""


@dataclass
class ToolContext:
    """Where a tool runs and the limits it runs under."""

    workspace: Path
    stop: Stop
    timeout: float
    output_bytes: int

    @classmethod
    def from_settings(cls, settings: Settings, workspace: Path, stop: Stop) -> ToolContext:
        """A context with the limits from ``settings``."""
        return cls(workspace, stop, settings.tool_timeout, settings.tool_output_bytes)


class Tool(ABC):
    """One tool the model may call; ``parameters`` is its JSON schema."""

    name: ClassVar[str]
    idempotent: ClassVar[bool]
    description: ClassVar[str]
    parameters: ClassVar[dict[str, Any]]

    @abstractmethod
    def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        """Run the call; raise :class:`ToolError` for a refused call."""


# ---------------------------------------------------------------------------- helpers


def _str_arg(args: dict[str, Any], name: str, default: str | None = None) -> str:
    """Argument ``name`` as a string; ToolError if it is missing or not a string."""
    value = args.get(name, default)
    if value is None:
        raise ToolError(f"missing argument {name!r}")
    if not isinstance(value, str):
        raise ToolError(f"argument {name!r} must be a string, not {type(value).__name__}")
    return value


def _check_args(args: dict[str, Any], allowed: set[str]) -> None:
    """Refuse arguments the tool does not know, so a typo does not pass silently."""
    unknown = sorted(set(args) - allowed)
    if unknown:
        raise ToolError(f"unknown argument(s): {', '.join(unknown)}")


def _cap(data: bytes, limit: int, total: int | None = None) -> str:
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


# ---------------------------------------------------------------------------- shell


class _Output:
    """Combined stdout+stderr: keeps the head up to a limit and counts the rest."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.head = bytearray()
        self.total = 0

    def add(self, chunk: bytes) -> None:
        room = self.limit - len(self.head)
        if room > 0:
            self.head += chunk[:room]
        self.total += len(chunk)

    def text(self) -> str:
        return _cap(bytes(self.head), self.limit, self.total)


# Loaded once here: the forked child may only make this one call before exec.
try:
    _LIBC: ctypes.CDLL | None = ctypes.CDLL(None, use_errno=True)
except OSError:  # pragma: no cover - not Linux/glibc
    _LIBC = None
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the command's process: be SIGKILLed if the turn's process dies (Linux).

    Without it a command outlives a SIGKILLed worker and runs on as an orphan.
    """
    if _LIBC is not None and sys.platform == "linux":
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the command's whole process group, background children included."""
    # ESRCH: the group is gone already; EPERM: only zombies are left in it.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def _drain(sel: selectors.BaseSelector, pipe: IO[bytes], out: _Output, wait: float) -> int | None:
    """Read what the pipe has within ``wait`` seconds: bytes read, or None at EOF."""
    if not sel.select(wait):
        return 0
    chunk = os.read(pipe.fileno(), _READ_CHUNK)
    if not chunk:
        sel.unregister(pipe)
        return None
    out.add(chunk)
    return len(chunk)


def _drain_after_exit(sel: selectors.BaseSelector, pipe: IO[bytes], out: _Output) -> None:
    """Take what the finished shell left in the pipe, without waiting for stragglers.

    Background children may still hold the pipe open (or keep writing), so stop at the
    first empty read or after a short budget.
    """
    budget = time.monotonic() + _POLL_SECONDS
    while time.monotonic() < budget:
        got = _drain(sel, pipe, out, 0)
        if not got:
            return


def _supervise(proc: subprocess.Popen[bytes], out: _Output, ctx: ToolContext) -> str | None:
    """Wait for the command while reading its output; why it must be killed, or None."""
    assert proc.stdout is not None
    deadline = time.monotonic() + ctx.timeout
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        pipe_open = True
        while True:
            if proc.poll() is not None:
                if pipe_open:
                    _drain_after_exit(sel, proc.stdout, out)
                return None
            if ctx.stop.time_left() == 0:
                return "interrupted"
            wait = min(_POLL_SECONDS, deadline - time.monotonic())
            if wait <= 0:
                return "timeout"
            if pipe_open:
                pipe_open = _drain(sel, proc.stdout, out, wait) is not None
            else:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(wait)


class ShellTool(Tool):
    """``/bin/sh -c`` in the workspace, killed with its group on timeout or stop."""

    name = "shell"
    idempotent = False
    description = (
        "Run a shell command (/bin/sh -c) in the workspace and return its combined "
        "stdout and stderr and its exit code. No stdin. Background processes are "
        "killed when the command ends."
    )
    parameters: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {"command": {"type": "string", "description": "The command line"}},
        "required": ["command"],
        "additionalProperties": False,
    }

    def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        _check_args(args, {"command"})
        command = _str_arg(args, "command")
        out = _Output(ctx.output_bytes)
        started = time.monotonic()
        # Own session: a signal to the worker's process group never reaches the command,
        # and killpg can take down everything the command started.
        proc = subprocess.Popen(
            ["/bin/sh", "-c", command],
            cwd=ctx.workspace,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - one prctl call, no locks taken
        )
        try:
            why = _supervise(proc, out, ctx)
        finally:
            _kill_group(proc)
            proc.wait()
            assert proc.stdout is not None
            proc.stdout.close()
        return _shell_result(out, proc.returncode, why, time.monotonic() - started, ctx)


def _shell_result(
    out: _Output, code: int, why: str | None, elapsed: float, ctx: ToolContext
) -> ToolResult:
    """The model-facing report of one shell command."""
    text = out.text()
    if text and not text.endswith("\n"):
        text += "\n"
    if why == "interrupted":
        reason = ctx.stop.reason or "stop"
        note = f"interrupted by a stop ({reason}) after {elapsed:.1f} s: the command was killed"
        return ToolResult(text + note, interrupted=True)
    if why == "timeout":
        return ToolResult(text + f"timed out after {ctx.timeout:g} s: the command was killed")
    return ToolResult(text + f"exit code {code}")


# ---------------------------------------------------------------------------- files


class ReadFileTool(Tool):
    """Read a text file from the workspace."""

    name = "read_file"
    idempotent = True
    description = "Read a file in the workspace (path relative to the workspace)."
    parameters: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {"path": {"type": "string", "description": "Relative file path"}},
        "required": ["path"],
        "additionalProperties": False,
    }

    def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        _check_args(args, {"path"})
        raw = _str_arg(args, "path")
        path = resolve_path(ctx.workspace, raw)
        info = path.stat()
        # Refuse FIFOs and devices: opening one could block the turn forever.
        if stat.S_ISDIR(info.st_mode):
            raise ToolError(f"{raw!r} is a directory; use list_dir")
        if not stat.S_ISREG(info.st_mode):
            raise ToolError(f"{raw!r} is not a regular file")
        with path.open("rb") as f:
            head = f.read(ctx.output_bytes)
        return ToolResult(_cap(head, ctx.output_bytes, info.st_size))


class WriteFileTool(Tool):
    """Write (create or replace) a text file in the workspace."""

    name = "write_file"
    idempotent = False
    description = (
        "Write a file in the workspace, replacing it if it exists; parent directories are created."
    )
    parameters: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "path": {"type": "string", "description": "Relative file path"},
            "content": {"type": "string", "description": "The whole new content"},
        },
        "required": ["path", "content"],
        "additionalProperties": False,
    }

    def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        _check_args(args, {"path", "content"})
        raw = _str_arg(args, "path")
        data = _str_arg(args, "content").encode("utf-8")
        # resolve_path follows a symlinked final component too, so writing through a
        # link that points outside is refused like any other escape.
        path = resolve_path(ctx.workspace, raw)
        if path.is_dir():
            raise ToolError(f"{raw!r} is a directory")
        path.parent.mkdir(parents=True, exist_ok=True)
        # The path is fully resolved; O_NOFOLLOW guards against a link swapped in since.
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
        fd = os.open(path, flags, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return ToolResult(f"wrote {len(data)} bytes to {raw}")


class ListDirTool(Tool):
    """List a directory of the workspace."""

    name = "list_dir"
    idempotent = True
    description = (
        "List a directory in the workspace (default: its top). Directories end "
        "with '/', symlinks with '@'."
    )
    parameters: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {"path": {"type": "string", "description": "Relative path; '.' if omitted"}},
        "additionalProperties": False,
    }

    def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        _check_args(args, {"path"})
        raw = _str_arg(args, "path", ".")
        path = resolve_path(ctx.workspace, raw)
        if not path.is_dir():
            raise ToolError(f"{raw!r} is not a directory")
        lines = []
        with os.scandir(path) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                suffix = "@" if entry.is_symlink() else "/" if entry.is_dir() else ""
                lines.append(entry.name + suffix)
        data = "\n".join(lines).encode("utf-8", errors="surrogateescape")
        return ToolResult(_cap(data, ctx.output_bytes) if lines else "(empty)")


TOOLS: dict[str, Tool] = {
    tool.name: tool for tool in (ShellTool(), ReadFileTool(), WriteFileTool(), ListDirTool())
}


def run_tool(name: str, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
    """Run tool ``name``; a refused or failed call becomes ``error: ...`` content."""
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


def openai_tool_specs() -> list[dict[str, Any]]:
    """The tools as the OpenAI chat ``tools`` parameter."""
    return [
        {
            "type": "function",
            "function": {
                "name": tool.name,
                "description": tool.description,
                "parameters": tool.parameters,
            },
        }
        for tool in TOOLS.values()
    ]
