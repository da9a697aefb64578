"""``edit_file``: replace one exact string in a workspace file, or say clearly why not.

The string must occur exactly once: no match and several matches are both refused, with
the lines where it occurs, so the model adds context instead of editing the wrong place.
The file is rewritten in place (same inode, same mode) through the file tools' guards.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

from runner.errors import ToolError
from workers.tools.base import Tool, ToolContext, ToolResult, check_args, resolve_path, str_arg
from workers.tools.files import open_regular

# Largest file edit_file rewrites; larger ones are for shell tools.
MAX_EDIT_BYTES = 8 * 1024 * 1024
_SHOWN_LINES = 10


def _lines_of(text: str, needle: str) -> list[int]:
    """The 1-based line numbers where each occurrence of ``needle`` starts."""
    lines, start = [], text.find(needle)
    while start != -1:
        lines.append(text.count("\n", 0, start) + 1)
        start = text.find(needle, start + 1)
    return lines


class EditFileTool(Tool):
    """Replace an exact string that occurs once in a workspace file."""

    name = "edit_file"
    idempotent = False
    description = (
        "Edit a file in the workspace: replace old_string, which must occur exactly once "
        "(include enough surrounding text to make it unique), with new_string."
    )
    parameters: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "path": {"type": "string", "description": "Relative file path"},
            "old_string": {"type": "string", "description": "The exact text to replace"},
            "new_string": {"type": "string", "description": "The text to put instead"},
        },
        "required": ["path", "old_string", "new_string"],
        "additionalProperties": False,
    }

    def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        check_args(args, {"path", "old_string", "new_string"})
        raw = str_arg(args, "path")
        old, new = str_arg(args, "old_string"), str_arg(args, "new_string")
        if not old:
            raise ToolError("old_string is empty: to write a whole file, use write_file")
        if old == new:
            raise ToolError("old_string and new_string are the same: nothing to change")
        path = resolve_path(ctx.workspace, raw)
        fd = open_regular(path, raw, os.O_RDWR, "; edit_file edits files")
        with os.fdopen(fd, "r+b") as f:
            data = f.read(MAX_EDIT_BYTES + 1)
            if len(data) > MAX_EDIT_BYTES:
                raise ToolError(f"{raw!r} is over {MAX_EDIT_BYTES} bytes: edit it with shell")
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                raise ToolError(f"{raw!r} is not UTF-8 text: edit it with shell") from None
            lines = _lines_of(text, old)
            if not lines:
                raise ToolError(f"old_string not found in {raw}: nothing was changed")
            if len(lines) > 1:
                shown = ", ".join(map(str, lines[:_SHOWN_LINES]))
                raise ToolError(
                    f"old_string occurs {len(lines)} times in {raw} (lines {shown}): "
                    "include more surrounding text so it occurs once; nothing was changed"
                )
            f.seek(0)
            f.truncate(0)
            f.write(text.replace(old, new, 1).encode("utf-8"))
        return ToolResult(f"edited {raw}: replaced 1 occurrence at line {lines[0]}")
