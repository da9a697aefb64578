"""The shell tool: ``/bin/sh -c`` in the workspace, under a supervisor that leaves nothing.

The command runs below :mod:`workers.tools.reaper`, a child subreaper in a session of its
own: a signal to the worker's process group never reaches the command, and when the
command ends, times out or is stopped, every process it started goes with it, including
those that called ``setsid``. The command gets the clean tool environment, never the
worker's.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any, ClassVar

from workers.tools.base import Tool, ToolContext, ToolResult, cap, check_args, str_arg
from workers.tools.env import hide_environment

# How long the shell supervisor sleeps between checks of its deadlines.
POLL_SECONDS = 0.1
_READ_CHUNK = 64 * 1024
REAPER = str(Path(__file__).with_name("reaper.py"))
# How long the reaper may take to clean up after a SIGTERM before it is SIGKILLed.
_REAP_SECONDS = 2.0
_TAIL_BYTES = 200


def _report(ctx: ToolContext, out: _Output, started: float, told: int) -> int:
    """A progress note once a second past ``progress_after``; the seconds last told."""
    ran = int(time.monotonic() - started)
    if ctx.progress is None or ran < ctx.progress_after or ran == told:
        return told
    line = out.last_line()
    ctx.progress(f"shell still running ({ran} s)" + (f": {line}" if line else ""))
    return ran


class _Output:
    """Combined stdout+stderr: keeps the head up to a limit and counts the rest."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.head = bytearray()
        self.tail = b""  # the last bytes seen, for a progress note's last line
        self.total = 0

    def add(self, chunk: bytes) -> None:
        room = self.limit - len(self.head)
        if room > 0:
            self.head += chunk[:room]
        self.tail = (self.tail + chunk)[-_TAIL_BYTES:]
        self.total += len(chunk)

    def last_line(self) -> str:
        lines = self.tail.decode("utf-8", "replace").splitlines()
        return lines[-1].strip()[:_TAIL_BYTES] if lines else ""

    def text(self) -> str:
        return cap(bytes(self.head), self.limit, self.total)


def _stop_tree(proc: subprocess.Popen[bytes]) -> None:
    """End the command and all it started: the reaper does it on SIGTERM.

    Only a reaper that does not finish within a bound (a descendant it may not kill) is
    SIGKILLed with its group; the command's shell dies with it (its death signal).
    Nothing is signalled once the reaper is reaped: its pid may belong to another by then.
    """
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(_REAP_SECONDS)
    except subprocess.TimeoutExpired:
        # Not reaped yet, so the pid (and group id) is still the reaper's.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


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
    budget = time.monotonic() + POLL_SECONDS
    while time.monotonic() < budget:
        got = _drain(sel, pipe, out, 0)
        if not got:
            return


def _supervise(proc: subprocess.Popen[bytes], out: _Output, ctx: ToolContext) -> str | None:
    """Wait for the command while reading its output; why it must be killed, or None."""
    assert proc.stdout is not None
    started = time.monotonic()
    deadline = started + ctx.timeout
    told = 0
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        pipe_open = True
        while True:
            told = _report(ctx, out, started, told)
            if proc.poll() is not None:
                if pipe_open:
                    _drain_after_exit(sel, proc.stdout, out)
                return None
            if ctx.stop.time_left() == 0:
                return "interrupted"
            wait = min(POLL_SECONDS, deadline - time.monotonic())
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
        check_args(args, {"command"})
        command = str_arg(args, "command")
        out = _Output(ctx.output_bytes)
        started = time.monotonic()
        hide_environment()  # of this process (the turn's); idempotent
        # The reaper's death signal fires when the thread that starts it ends: this one,
        # which waits for it below.
        # -I -S: no site, no user paths; the reaper needs the standard library only.
        argv = [sys.executable, "-I", "-S", REAPER, str(os.getpid()), "/bin/sh", "-c", command]
        proc = subprocess.Popen(
            argv,
            cwd=ctx.workspace,
            env=ctx.environment(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            why = _supervise(proc, out, ctx)
        finally:
            _stop_tree(proc)
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
