"""File tools: read, write and list inside the run's workspace, never blocking on odd files.

Anything that is not a regular file or a directory (a FIFO, a device, a socket) is
refused: opening a FIFO for writing blocks until a reader comes, which is forever. Each
file is checked with ``lstat`` before it is opened and with ``fstat`` on the open
descriptor (opened ``O_NONBLOCK``, so even a FIFO swapped in between cannot block).
"""

from __future__ import annotations

import fcntl
import os
import stat
from pathlib import Path
from typing import Any, ClassVar

from runner.errors import ToolError
from workers.tools.base import Tool, ToolContext, ToolResult, cap, check_args, resolve_path, str_arg

_NONBLOCK_OPEN = os.O_NONBLOCK | os.O_NOFOLLOW | os.O_NOCTTY | os.O_CLOEXEC


def _refuse_odd(raw: str, mode: int, want_dir_hint: str = "") -> None:
    """ToolError unless ``mode`` is a regular file's."""
    if stat.S_ISDIR(mode):
        raise ToolError(f"{raw!r} is a directory{want_dir_hint}")
    if not stat.S_ISREG(mode):
        raise ToolError(f"{raw!r} is not a regular file")


def open_regular(path: Path, raw: str, flags: int, hint: str = "") -> int:
    """A descriptor on the regular file at ``path``; ToolError for anything else."""
    try:
        _refuse_odd(raw, os.lstat(path).st_mode, hint)
    except FileNotFoundError:
        if not flags & os.O_CREAT:
            raise
    fd = os.open(path, flags | _NONBLOCK_OPEN, 0o644)
    try:
        _refuse_odd(raw, os.fstat(fd).st_mode, hint)
        # Back to blocking I/O: for a regular file it changes nothing, but says so.
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    except BaseException:
        os.close(fd)
        raise
    return fd


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
        check_args(args, {"path"})
        raw = str_arg(args, "path")
        path = resolve_path(ctx.workspace, raw)
        fd = open_regular(path, raw, os.O_RDONLY, "; use list_dir")
        with os.fdopen(fd, "rb") as f:
            size = os.fstat(fd).st_size
            head = f.read(ctx.output_bytes)
        return ToolResult(cap(head, ctx.output_bytes, size))


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
        check_args(args, {"path", "content"})
        raw = str_arg(args, "path")
        data = str_arg(args, "content").encode("utf-8")
        # resolve_path follows a symlinked final component too, so writing through a
        # link that points outside is refused like any other escape; O_NOFOLLOW guards
        # against a link swapped in since.
        path = resolve_path(ctx.workspace, raw)
        if path.is_dir():
            raise ToolError(f"{raw!r} is a directory")
        path.parent.mkdir(parents=True, exist_ok=True)
        # Truncated only once the descriptor is known to be a regular file's.
        fd = open_regular(path, raw, os.O_WRONLY | os.O_CREAT)
        with os.fdopen(fd, "wb") as f:
            f.truncate(0)
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
        check_args(args, {"path"})
        raw = str_arg(args, "path", ".")
        path = resolve_path(ctx.workspace, raw)
        if not path.is_dir():
            raise ToolError(f"{raw!r} is not a directory")
        lines = []
        with os.scandir(path) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                suffix = "@" if entry.is_symlink() else "/" if entry.is_dir() else ""
                lines.append(entry.name + suffix)
        data = "\n".join(lines).encode("utf-8", errors="surrogateescape")
        return ToolResult(cap(data, ctx.output_bytes) if lines else "(empty)")
