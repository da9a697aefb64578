"""What an MCP hub knows of one configured server: its session, tools, failures, stderr.

Touched only on the hub's event loop (workers/tools/mcp.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TextIO

from workers.tools.base import Tool
from workers.tools.mcp_config import ServerConfig

if TYPE_CHECKING:
    from mcp import ClientSession

RETRY_FIRST, RETRY_MAX = 2.0, 60.0  # pause before starting again a server that failed
_STDERR_TAIL = 400


@dataclass
class Server:
    """What the hub knows of one configured server; touched only on the hub's loop."""

    name: str
    config: ServerConfig
    tools: dict[str, Tool] = field(default_factory=dict)  # by public name, once listed
    session: ClientSession | None = None
    error: str = ""  # why it is not running, when it is not
    ended: bool = False  # its stdout reached its end: the process is gone
    mark: int = 0  # its stderr's size after the last call: what came later explains an exit
    retry_at: float = 0.0  # monotonic time before which a failed start is not retried
    pause: float = RETRY_FIRST
    stopping: asyncio.Event | None = None
    task: asyncio.Task[None] | None = None
    stderr: TextIO | None = None

    def stderr_size(self) -> int:
        """How much the server wrote to its stderr so far."""
        with contextlib.suppress(OSError, ValueError, AttributeError):
            return os.fstat(self.stderr.fileno()).st_size  # type: ignore[union-attr]
        return 0

    def stderr_tail(self, since: int = 0) -> str:
        """The last line the server wrote to its stderr after offset ``since``, or ''."""
        if self.stderr is None:
            return ""
        with contextlib.suppress(OSError, ValueError):
            fd = self.stderr.fileno()
            start = max(os.fstat(fd).st_size - _STDERR_TAIL, since)
            data = os.pread(fd, _STDERR_TAIL, start)
            lines = data.decode("utf-8", "replace").strip().splitlines()
            return lines[-1].strip() if lines else ""
        return ""
