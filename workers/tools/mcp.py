"""MCP servers as tools: started per attempt in the run's workspace, offered as ``server__tool``.

The official ``mcp`` SDK is asyncio; a turn is not. :class:`McpHub` runs a private event
loop in a thread of the process running the turn, and every server is an owner task
there that holds its ``stdio_client`` and ``ClientSession`` open until told to stop (anyio
wants a context entered and left by one task). The turn's thread submits coroutines and
waits on their futures, looking at its stop request while it waits.

Lifetime: a server is started on first use (the first ``specs()``, before the first
model call, so after the workspace is restored) below :mod:`workers.tools.reaper`, so it
and whatever it starts die with the turn even when the turn's process is SIGKILLed. A
server that fails to start or dies is a progress note and an ``error: ...`` tool result,
never a failed turn; the next call starts it again (a server that never came up is
retried on later steps with a growing pause). :meth:`McpHub.close` stops them all at the
end of the attempt (handoff, cancel, end).

Each call carries its effect id in the request's ``_meta`` as ``runner/effect_id``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from runner.errors import BadInput, ToolError
from workers.providers.base import ToolSpec
from workers.stop import Stop
from workers.tools.base import Tool, ToolContext, ToolResult, tool_class
from workers.tools.mcp_config import ServerConfig
from workers.tools.mcp_server import RETRY_FIRST, RETRY_MAX, Server
from workers.tools.mcp_wire import (
    EFFECT_META_KEY,
    Watched,
    describe,
    public_name,
    result_text,
    start_error,
)
from workers.tools.output import fit
from workers.tools.shell import REAPER

if TYPE_CHECKING:
    from mcp import ClientSession
    from mcp_types import Tool as McpToolInfo

log = logging.getLogger("runner.tools.mcp")
T = TypeVar("T")

INSTALL_HINT = "RUNNER_MCP_CONFIG is set but the mcp SDK is missing: pip install 'runner[mcp]'"
START_SECONDS = 60.0  # for a server to start and list its tools (a loaded host is slow)
# At the end of an attempt, how long servers get to exit after their stdin closes (the
# SDK then SIGTERMs them) before the loop's thread ends, which SIGTERMs their reapers.
CLOSE_SECONDS = 3.0
POLL_SECONDS = 0.05


def require_sdk() -> None:
    """BadInput with the install line unless the ``mcp`` SDK imports."""
    try:
        import mcp  # noqa: F401
    except ImportError:
        raise BadInput(INSTALL_HINT) from None


class McpTool(Tool):
    """One tool of one MCP server; a subclass per tool is made by :func:`_make_tool`."""

    server: ClassVar[str]
    remote_name: ClassVar[str]
    hub: ClassVar[McpHub]

    def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        return self.hub.call(self.server, self.remote_name, args, ctx)


class McpHub:
    """The MCP servers of one attempt, on a private event loop; a tool source for the turn."""

    def __init__(
        self,
        servers: Mapping[str, ServerConfig],
        workspace: Path,
        env: Mapping[str, str],
        stop: Stop,
        note: Callable[[str], None] | None = None,
    ) -> None:
        require_sdk()
        self.workspace = workspace
        self.env = dict(env)
        self.stop = stop
        self._note = note
        self._servers = {name: Server(name, cfg) for name, cfg in servers.items()}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    # -- the tool source ----------------------------------------------------------------

    def specs(self) -> list[ToolSpec]:
        """Every listed tool of every server, starting the servers not running yet."""
        self._start_due(list(self._servers.values()))
        return [t.spec() for s in self._servers.values() for t in s.tools.values()]

    def get(self, name: str) -> Tool | None:
        """The tool ``name`` (``server__tool``), its server started to list it; else None.

        A configured server that could not list its tools still answers for its names:
        a call then says why it is not running (or starts it, if it now can).
        """
        server = self._servers.get(name.partition("__")[0])
        if server is None or "__" not in name:
            return None
        self._start_due([server])  # so an idempotent MCP tool is known as one on resume
        return server.tools.get(name) or self._unlisted(server, name)

    def _start_due(self, servers: list[Server]) -> None:
        due = [s.name for s in servers if self._due(s)]
        if due and not self._closed:
            with contextlib.suppress(_Abandoned):
                self._wait(self._on_loop(self._start_all(due)), START_SECONDS + 1)

    def close(self) -> None:
        """Stop every server and the loop; waits at most a few seconds, idempotent."""
        if self._closed:
            return
        self._closed = True
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        future = asyncio.run_coroutine_threadsafe(self._stop_all(), loop)
        left = self.stop.time_left()  # under a handoff or a cancel, no more than it has
        with contextlib.suppress(Exception):
            future.result(CLOSE_SECONDS if left is None else min(CLOSE_SECONDS, left))
        # Ending the thread that started the reapers is their death signal: any server
        # still stopping is killed with everything it started.
        loop.call_soon_threadsafe(loop.stop)
        thread.join(2)
        if future.done() and not thread.is_alive():
            loop.close()

    # -- calls --------------------------------------------------------------------------

    def call(self, server: str, tool: str, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        """Call ``tool`` of ``server``; every failure is an ``error: ...`` result or ToolError."""
        srv = self._servers[server]
        try:
            result = self._wait(self._on_loop(self._call(srv, tool, args, ctx)), None)
        except _Abandoned:
            reason = ctx.stop.reason or "stop"
            return ToolResult(
                f"interrupted by a stop ({reason}): the call to MCP server {server} was "
                "abandoned; it may or may not have taken effect",
                interrupted=True,
            )
        return ToolResult(fit(result, ctx.output_bytes))

    async def _call(self, srv: Server, tool: str, args: dict[str, Any], ctx: ToolContext) -> str:
        from mcp import MCPError
        from mcp_types import CONNECTION_CLOSED

        session = await self._session(srv)
        mark = srv.stderr_size()
        meta = {EFFECT_META_KEY: ctx.effect_id} if ctx.effect_id else None
        try:
            result = await session.call_tool(
                tool,
                args,
                read_timeout_seconds=ctx.timeout,
                meta=meta,  # type: ignore[arg-type]
            )
        except MCPError as exc:
            if exc.error.code != CONNECTION_CLOSED:
                raise ToolError(f"MCP server {srv.name}: {exc.error.message}") from None
            why = await self._lost(srv, "died during the call", mark)
            raise ToolError(f"{why}; it is started again for the next call") from None
        except TimeoutError:
            why = f"MCP server {srv.name} did not answer within {ctx.timeout:g} s"
            raise ToolError(why) from None
        srv.mark = srv.stderr_size()
        text = result_text(result)
        return f"error: {text}" if result.is_error else text

    async def _session(self, srv: Server) -> ClientSession:
        """A live session with ``srv``, started (again) if it is not running or has exited."""
        if srv.session is not None and srv.ended:
            await self._lost(srv, "had exited since the last call", srv.mark)
        if srv.session is None:
            await self._start(srv)
        if srv.session is None:
            raise ToolError(f"MCP server {srv.name} is not running: {srv.error}")
        return srv.session

    async def _lost(self, srv: Server, what: str, since: int = 0) -> str:
        """Shut a dead server's transport down; the note that says so."""
        tail = srv.stderr_tail(since)
        await self._stop(srv)
        why = f"MCP server {srv.name} {what}" + (f" ({tail})" if tail else "")
        srv.error = why
        srv.retry_at = 0.0  # a call starts it again at once
        self.note(why)
        log.warning("mcp server lost", extra={"server": srv.name, "error": why})
        return why

    # -- starting and stopping (on the loop) --------------------------------------------

    def _due(self, srv: Server) -> bool:
        return srv.session is None and not srv.tools and time.monotonic() >= srv.retry_at

    async def _start_all(self, names: list[str]) -> None:
        await asyncio.gather(*(self._start(self._servers[n]) for n in names))

    async def _start(self, srv: Server) -> None:
        """Start ``srv`` and list its tools; on failure, record why and note it."""
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        srv.stopping, srv.ended = asyncio.Event(), False
        # Kept until the server stops: its last line explains a failed start or a death.
        srv.stderr = tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace")  # noqa: SIM115
        srv.task = asyncio.create_task(self._own(srv, ready))
        try:
            await asyncio.wait_for(asyncio.shield(ready), START_SECONDS)
        except TimeoutError:
            srv.error = f"did not start within {START_SECONDS:g} s"
        except Exception as exc:
            srv.error = start_error(exc)
        else:
            srv.error, srv.pause = "", RETRY_FIRST
            log.info("mcp server started", extra={"server": srv.name, "tools": len(srv.tools)})
            return
        tail = srv.stderr_tail()
        await self._stop(srv)
        srv.error += f" ({tail})" if tail and tail not in srv.error else ""
        srv.retry_at, srv.pause = time.monotonic() + srv.pause, min(srv.pause * 2, RETRY_MAX)
        self.note(f"MCP server {srv.name} failed to start: {srv.error}")
        log.warning("mcp server failed to start", extra={"server": srv.name, "error": srv.error})

    async def _own(self, srv: Server, ready: asyncio.Future[None]) -> None:
        """Hold ``srv``'s transport and session open until it is told to stop."""
        from mcp import ClientSession, StdioServerParameters, stdio_client

        assert srv.stopping is not None and srv.stderr is not None
        cfg = srv.config
        # The reaper (our child, dying with this thread's process) runs the server in a
        # group of its own and takes every process it starts down with it.
        params = StdioServerParameters(
            command=sys.executable,
            args=["-I", "-S", REAPER, str(os.getpid()), cfg.command, *cfg.args],
            env={**self.env, **cfg.env},
            cwd=self.workspace,
        )
        try:
            async with (
                stdio_client(params, errlog=srv.stderr) as (read, write),
                ClientSession(Watched(read, lambda: setattr(srv, "ended", True)), write) as session,
            ):
                await session.initialize()
                srv.tools = await self._list(srv, session)
                srv.session = session
                ready.set_result(None)
                await srv.stopping.wait()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc if isinstance(exc, Exception) else RuntimeError(exc))
            if not isinstance(exc, Exception):
                raise
        finally:
            srv.session = None
            if not ready.done():
                ready.set_exception(RuntimeError("the server closed the connection"))

    async def _list(self, srv: Server, session: ClientSession) -> dict[str, Tool]:
        from mcp_types import PaginatedRequestParams

        tools: dict[str, Tool] = {}
        cursor: str | None = None
        while True:
            params = PaginatedRequestParams(cursor=cursor) if cursor else None
            page = await session.list_tools(params=params)
            for info in page.tools:
                made = _make_tool(self, srv.name, info)
                if made.name in tools:
                    extra = {"server": srv.name, "tool": info.name}
                    log.warning("mcp tool name taken", extra=extra)
                    continue
                tools[made.name] = made
            cursor = page.next_cursor
            if not cursor:
                return tools

    async def _stop(self, srv: Server) -> None:
        """Stop ``srv``'s owner task (the SDK stops the process), within a bound."""
        task, srv.task = srv.task, None
        if srv.stopping is not None:
            srv.stopping.set()
        if task is not None:
            try:
                await asyncio.wait_for(task, CLOSE_SECONDS)
            except (TimeoutError, asyncio.CancelledError):
                pass
            except Exception as exc:
                log.info("mcp server stopped", extra={"server": srv.name, "error": describe(exc)})
        srv.session = None
        if srv.stderr is not None:
            srv.stderr.close()
            srv.stderr = None

    async def _stop_all(self) -> None:
        await asyncio.gather(*(self._stop(s) for s in self._servers.values()))

    # -- plumbing -----------------------------------------------------------------------

    def note(self, text: str) -> None:
        if self._note is not None:
            self._note(text)

    def _unlisted(self, srv: Server, name: str) -> Tool:
        """A tool of a server that never listed its tools: each call says why, or works."""
        remote = name.partition("__")[2]
        return tool_class(
            McpTool,
            name,
            f"{remote} of MCP server {srv.name}",
            {"type": "object"},
            server=srv.name,
            remote_name=remote,
            hub=self,
        )()

    def _on_loop(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        if self._closed:
            coro.close()
            raise ToolError("MCP servers are stopped: the attempt is ending")
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(
                target=self._loop.run_forever, name="mcp-loop", daemon=True
            )
            self._thread.start()
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def _wait(self, future: concurrent.futures.Future[T], limit: float | None) -> T:
        """The future's result; _Abandoned (after cancelling it) on a stop or past ``limit``."""
        deadline = None if limit is None else time.monotonic() + limit
        while True:
            try:
                return future.result(POLL_SECONDS)
            except concurrent.futures.TimeoutError:
                late = deadline is not None and time.monotonic() > deadline
                if late or self.stop.time_left() == 0:
                    future.cancel()
                    raise _Abandoned from None


class _Abandoned(Exception):
    """A wait on the loop was given up: a stop, or its bound passed."""


def _make_tool(hub: McpHub, server: str, info: McpToolInfo) -> Tool:
    hints = info.annotations
    idempotent = bool(hints and (hints.read_only_hint or hints.idempotent_hint))
    schema = info.input_schema if isinstance(info.input_schema, dict) else {"type": "object"}
    cls = tool_class(
        McpTool,
        public_name(server, info.name),
        info.description or f"{info.name} of MCP server {server}",
        schema,
        idempotent,
        server=server,
        remote_name=info.name,
        hub=hub,
    )
    return cls()
