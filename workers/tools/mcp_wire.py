"""What crosses the MCP wire: tool names, results as text, a read stream that tells of EOF.

Kept apart from :mod:`workers.tools.mcp` (the hub and its loop) so each stays readable.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from mcp_types import CallToolResult

# The ``_meta`` key of a tools/call that carries the call's effect id.
EFFECT_META_KEY = "runner/effect_id"
_NAME_BAD = re.compile(r"[^A-Za-z0-9_-]")
T = TypeVar("T")


def public_name(server: str, tool: str) -> str:
    """``server__tool``, in what providers accept as a function name (64 characters)."""
    return f"{server}__{_NAME_BAD.sub('_', tool)}"[:64]


class Watched(Generic[T]):
    """A server's read stream (its stdout, as messages) that calls ``ended`` at its end.

    The session's dispatcher reads it all the time, so the end (the server exited, or
    closed its stdout) is seen at once: a call then starts the server again instead of
    sending into a closed connection, with no ping round trip before each call.
    """

    def __init__(self, stream: Any, ended: Callable[[], None]) -> None:
        self._stream = stream
        self._ended = ended

    async def receive(self) -> T:
        import anyio

        try:
            item: T = await self._stream.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._ended()
            raise
        return item

    def __aiter__(self) -> Watched[T]:
        return self

    async def __anext__(self) -> T:
        import anyio

        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def __aenter__(self) -> Watched[T]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __getattr__(self, name: str) -> Any:  # last_context, read by the dispatcher
        return getattr(self._stream, name)


def start_error(exc: BaseException) -> str:
    """Why a server did not start, in one line."""
    from mcp import MCPError
    from mcp_types import CONNECTION_CLOSED

    leaf = exc
    while isinstance(leaf, BaseExceptionGroup) and leaf.exceptions:
        leaf = leaf.exceptions[0]
    if isinstance(leaf, MCPError) and leaf.error.code == CONNECTION_CLOSED:
        return "it exited before it answered"
    return describe(exc)


def describe(exc: BaseException) -> str:
    """One line for an exception, unwrapping anyio's exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def result_text(result: CallToolResult) -> str:
    """A tool result's content blocks as text; what is not text is described."""
    parts = [_block_text(block) for block in result.content]
    if not parts and result.structured_content is not None:
        parts.append(json.dumps(result.structured_content, ensure_ascii=False, default=str))
    return "\n".join(parts) if parts else "(no output)"


def _block_text(block: Any) -> str:
    kind = getattr(block, "type", "?")
    if kind == "text":
        return str(block.text)
    if kind in ("image", "audio"):
        size = len(base64.b64decode(block.data, validate=False))
        return f"[{kind}: {block.mime_type}, {size} bytes, not shown]"
    if kind == "resource":
        res = block.resource
        text = getattr(res, "text", None)
        return str(text) if text is not None else f"[resource {res.uri}: binary, not shown]"
    if kind == "resource_link":
        return f"[resource link: {block.uri}]"
    return f"[{kind} content, not shown]"
