"""The agent loop: model call, commit, tools, commit, until a final answer or a stop.

Guarantee 1: the model's answer is committed before any tool runs, and each tool result
before the next model call. Guarantee 5: on resume, a tool call with no committed result
is re-run if the tool is idempotent, else answered with an "interrupted" message.
Guarantee 10: a server that refuses writes makes a commit wait and retry in this process;
an outage that outlasts the attempt parks the run with the reason named.

The model's view of the turn is :class:`runner.transcript.Transcript`, folded from the
stream on replay and fed every batch this attempt commits.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import redis

from runner import metrics, outage, replication, sessions
from runner.deltas import DeltaWriter
from runner.errors import BadInput, StaleEpoch, WorkspaceError
from runner.events import Event, MessageEvent, Status, StatusEvent, WorkspaceEvent
from runner.parking import Park
from runner.settings import Settings
from runner.store import RunStore
from runner.transcript import Transcript
from runner.workspace import manifest as ws_manifest
from runner.workspace.blobs import open_blobs
from runner.workspace.checkpoint import Checkpoint
from workers.bookkeeping import Bookkeeping, steps_in
from workers.compactor import Context
from workers.gate import Gate
from workers.providers import Interrupted, Model, ToolCall
from workers.stop import Stop
from workers.tools import ToolContext, mcp_servers, run_tool
from workers.tools import get as get_tool
from workers.tools import specs as tool_specs

log = logging.getLogger("runner.agent")
T = TypeVar("T")


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended. ``status`` None means fenced: write nothing more."""

    status: Status | None
    reason: str = ""
    error: str = ""
    park: Park | None = None  # waiting: what for (runner/parking.py)


class Turn:
    """One attempt at a run, from the last commit on."""

    def __init__(
        self,
        store: RunStore,
        run_id: str,
        epoch: int,
        model: Model,
        stop: Stop,
        settings: Settings,
        max_steps: int,
        workspace: Path,
        worker: str = "",
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.epoch = epoch
        self.model = model
        self.stop = stop
        self.settings = settings
        self.max_steps = max_steps
        self.worker = worker
        self.workspace = workspace
        self.checkpoint: Checkpoint | None = None
        self.fields = {"run": run_id, "epoch": epoch, "worker": worker}
        self.deltas = DeltaWriter(
            store.redis,
            store.keys.deltas(run_id),
            epoch,
            flush_seconds=settings.delta_flush_ms / 1000,
            maxlen=settings.delta_maxlen,
            ttl_seconds=settings.delta_ttl_seconds,
            fields=self.fields,
        )
        self.tools = ToolContext(
            workspace=workspace,
            stop=stop,
            timeout=settings.tool_timeout,
            output_bytes=settings.tool_output_bytes,
            progress=self.deltas.note,
            progress_after=settings.tool_progress_seconds,
            run_id=run_id,
            extra=mcp_servers(settings, workspace, stop, self.deltas.note),
        )
        self.transcript = Transcript()
        self.gate = Gate(settings, max_steps)  # budgets and approvals (workers/gate.py)
        self.books = Bookkeeping(self.gate)  # spans, timings, metrics (workers/bookkeeping.py)
        self.context: Context  # opened with the transcript, at the start of the attempt
        self.inbox = 0  # messages waiting in the inbox, as the last commit reported
        self.replication = replication.for_settings(settings, store.redis)  # WAIT (issue 17)
        # Built once: it wraps every commit, the hot path of a turn.
        self._retry = outage.retrying(
            settings.reconnect_seconds,
            log,
            self.fields,
            stop.time_left,
            stop.requested,
            on_wait=self.deltas.note,
        )

    def run(self) -> Outcome:
        """Run until the turn ends or stops; never raises for a fenced attempt or an outage."""
        try:
            return self._run()
        finally:
            self.tools.close()  # the attempt's MCP servers end with it
            self.deltas.close()
            if self.checkpoint is not None:
                self.checkpoint.close()

    def _run(self) -> Outcome:
        try:
            # A session turn's first attempt takes in the turns before it (issue 14).
            history = self._retrying(
                lambda: sessions.prepare(self.store, self.settings, self.run_id, self.epoch)
            )
            events = self._retrying(self._read_all)
            self.transcript = Transcript.fold(events, history)
            if self.transcript.answered:  # the last attempt died before it ended the run
                # Ending needs no budgets, context or workspace: none is loaded.
                log.info("final answer already committed", extra=self.fields)
                return Outcome(Status.SUCCEEDED, "final answer")
            self.gate.load(self._retrying(lambda: self.store.get(self.run_id)), events)
            self.context = self._retrying(self._open_context)
            self._restore(events)
            ended = self._repair()
            if ended is not None:
                return ended
            # A message sent while the run was queued goes in before the first model call.
            self._take_inbox()
            return self._loop()
        except StaleEpoch as exc:
            metrics.fenced()
            log.warning("fenced", extra={**self.fields, "error": str(exc)})
            return Outcome(None, "fenced")
        except redis.RedisError as exc:
            if not outage.is_outage(exc):
                raise
            return self._outage(exc)

    def _loop(self) -> Outcome:
        while True:
            if self.stop:
                return self._stopped()
            held = self.gate.before_model(self.transcript.own_steps)
            if held is not None:
                return self._park(held)
            if self.inbox:
                self._take_inbox()
            self.deltas.begin(self.transcript.last_id)
            tools = tool_specs(self.tools)  # built-ins, user tools, this attempt's MCP tools
            try:
                # What the model is sent; compacted and committed first if it would not fit.
                messages = self.context.prepare(self.transcript, tools)
                step = self.transcript.own_steps
                reply = self.books.ask(
                    self.model, messages, tools, self.stop, step=step, sink=self.deltas
                )
            except Interrupted:
                return self._stopped()
            except (StaleEpoch, redis.RedisError):
                raise  # a compaction's commit: fenced, or an outage, as for any commit
            except Exception as exc:
                log.exception("model call failed", extra=self.fields)
                return Outcome(Status.FAILED, "model error", f"{type(exc).__name__}: {exc}")
            self.deltas.discard()
            self._commit(self.books.reply_events(reply, self.transcript.messages))
            if not reply.tool_calls:
                return Outcome(Status.SUCCEEDED, "final answer")
            ended = self._calls(reply.tool_calls)
            if ended is not None:
                return ended

    def _calls(self, calls: list[ToolCall]) -> Outcome | None:
        """Run tool calls in order, each result committed; an Outcome if the attempt ends."""
        for call in calls:
            if self.stop.hurry.is_set():
                return self._stopped()
            held = self.gate.before_tool(call)
            if held is not None:
                return self._park(held)
            self.deltas.begin(self.transcript.last_id)  # its progress notes
            result = self.books.run(call, self.tools)
            self.deltas.discard()
            self._commit_tool(call.id, call.name, result.content)
            if result.interrupted:
                return self._stopped()
        return None

    def _park(self, held: Park) -> Outcome:
        log.info("parking", extra={**self.fields, "waiting_for": held.waiting_for})
        return Outcome(Status.WAITING, held.reason, park=held)

    def _stopped(self) -> Outcome:
        if self.stop.reason == "cancel":
            return Outcome(Status.CANCELLED, "cancelled by user")
        if self.stop.reason == "fenced":
            return Outcome(None, "fenced")
        return Outcome(Status.QUEUED, "handoff")

    def _outage(self, exc: redis.RedisError) -> Outcome:
        """The server refused a write for longer than this attempt can wait: park the run."""
        what = outage.describe(exc)
        log.warning("attempt parked by an outage", extra={**self.fields, "error": what})
        if self.stop:
            ended = self._stopped()
            if ended.status is Status.QUEUED:
                return Outcome(Status.QUEUED, f"handoff ({what})", str(exc))
            return ended
        waited = f"{self.settings.reconnect_seconds:g}"
        return Outcome(Status.SUSPENDED, f"{what} for over {waited} s", str(exc))

    # -- repair -------------------------------------------------------------------------

    def _repair(self) -> Outcome | None:
        """Answer the tool calls of the last assistant message that have no result.

        Calls held back by a park were never started: they run now, through the gate.
        """
        if self.gate.untouched:
            calls = [ToolCall(c.id, c.name, dict(c.arguments)) for c in self.transcript.pending]
            return self._calls(calls)
        for call in list(self.transcript.pending):
            if self.stop.hurry.is_set():
                return None
            tool = get_tool(call.name, self.tools)
            if tool is not None and tool.idempotent:
                held = self.gate.before_tool(ToolCall(call.id, call.name, dict(call.arguments)))
                if held is not None:
                    return self._park(held)  # a re-run asks for approval like a first run
                log.info("re-running idempotent tool", extra={**self.fields, "tool": call.name})
                content = run_tool(call.name, dict(call.arguments), self.tools, call.id).content
            else:
                content = self._interrupted_note()
            self._commit_tool(call.id, call.name, content)
        return None

    def _interrupted_note(self) -> str:
        reason = self.transcript.requeue_reason
        cause = (
            "by a handoff"
            if reason.startswith("handoff")
            else f"when its worker was lost ({reason or 'unknown'})"
        )
        return (
            f"interrupted: this call was interrupted {cause} before its result was recorded; "
            "it may or may not have taken effect"
        )

    # -- commits ------------------------------------------------------------------------

    def _commit_tool(self, call_id: str, name: str, content: str) -> None:
        """Commit a tool result with what the tool changed in the workspace, in one script."""
        change, note = self._checkpoint()
        if note:
            content = f"{content}\n[workspace] {note}"
        events: list[Event] = [
            MessageEvent(role="tool", content=content, tool_call_id=call_id, name=name)
        ]
        if change is not None:
            events.append(change)
        self._commit(events, self.checkpoint.inline if self.checkpoint is not None else None)
        if change is not None and self.checkpoint is not None:
            self.checkpoint.committed(change)

    # -- workspace ----------------------------------------------------------------------

    def _restore(self, events: list[Event]) -> None:
        """Bring the directory to the last committed workspace before anything runs."""
        cfg = self.settings
        try:
            blobs = open_blobs(cfg, self.store.redis, self.store.keys, self.run_id)
            self.checkpoint = Checkpoint(
                self.workspace,
                blobs,
                ws_manifest.fold(events),
                cfg.workspace_max_bytes,
                cfg.workspace_ignore,
            )
            restore = self.checkpoint.restore
            done = self._retrying(lambda: restore(self._restoring))
        except (OSError, WorkspaceError, BadInput) as exc:
            # BadInput: a store URL this worker cannot open (fsspec or its backend missing).
            line = f"workspace not restored: {exc}"
            log.warning("workspace not restored", extra={**self.fields, "error": str(exc)})
        else:
            if done is None:
                return
            line = done.line()
            log.info("workspace restored", extra={**self.fields, "files": done.files})
        status = StatusEvent(status=Status.RUNNING, worker=self.worker or None, reason=line)
        self._commit([status])

    def _restoring(self, entries: int) -> None:
        """Followers see the restore under way: it may take a while for a big workspace."""
        self.deltas.begin(self.transcript.last_id)
        self.deltas.note(f"restoring workspace: {entries} files…")

    def _checkpoint(self) -> tuple[WorkspaceEvent | None, str]:
        """What the last tool changed (stored before the commit), and a note for the model."""
        if self.checkpoint is None:
            return None, ""
        try:
            return self._retrying(self.checkpoint.step)
        except (OSError, WorkspaceError) as exc:
            log.warning("workspace not checkpointed", extra={**self.fields, "error": str(exc)})
            return None, f"this step's files were not saved ({exc}); they may not follow the turn"

    def _commit(self, events: list[Event], blobs: dict[str, bytes] | None = None) -> None:
        steps = steps_in(events)
        seen = self.transcript.seen
        started = time.monotonic()
        commit = self._retrying(
            lambda: replication.commit(
                self.store, self.replication, self.run_id, self.epoch, events, seen, steps, blobs
            )
        )
        self.books.committed(events, steps, started)
        self.transcript.add(events, last_id=commit.last_id)
        self.inbox = commit.inbox

    def _take_inbox(self) -> None:
        """Move waiting messages into the stream, then fold only what came after."""
        self._retrying(lambda: self.store.drain_inbox(self.run_id, self.epoch))
        after = self.transcript.last_id
        self.transcript.add(self._retrying(lambda: self.store.events(self.run_id, after=after)))
        self.inbox = 0

    def _read_all(self) -> list[Event]:
        return self.store.events(self.run_id)

    def _open_context(self) -> Context:
        return Context.open(
            self.store,
            self.run_id,
            self.model,
            self.settings,
            self._commit,
            self.stop,
            sink=self.deltas,
            fields=self.fields,
            price=self.gate.usage,
        )

    def _retrying(self, fn: Callable[[], T]) -> T:
        result: T = self._retry(fn)
        return result
