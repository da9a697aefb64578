"""The client API: submit, inspect, steer and follow runs (following: runner/reader.py).

It is the one interface the front ends use (the CLI now, an HTTP app later): it checks
every input itself, and every Redis or RQ error leaves it as a RunnerError (``raise ...
from exc``), so a front end only maps RunnerError to its own output. Build it with
:func:`open_client`; it connects on first use, so bad input fails before any network.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from runner import budgets, prompts
from runner.budgets import Adds
from runner.checks import check_queue, check_session, check_text, check_window, decode_text
from runner.errors import BadInput, WrongState
from runner.events import (
    TERMINAL,
    Event,
    MessageEvent,
    Status,
    StatusEvent,
)
from runner.keys import check_run_id, check_tenant, new_run_id
from runner.prompts import DEFAULT_SYSTEM
from runner.providers import check_model_spec
from runner.reader import STREAM_ID, RunReader, _boundary
from runner.settings import Settings, load_settings
from runner.store import RunRecord

# Reading a run (follow, status) needs none of these, and they cost a reader more than
# the read itself (RQ alone is about 100 ms): each is imported by the method that uses it.
if TYPE_CHECKING:
    from runner.workspace.access import UploadProgress
    from runner.workspace.blobs import Blobs
    from runner.workspace.manifest import Manifest
    from runner.workspace.tree import Progress as PullProgress
    from runner.workspace.tree import Written

__all__ = [
    "STREAM_ID",
    "Client",
    "Submission",
    "check_queue",
    "check_session",
    "check_text",
    "decode_text",
    "open_client",
]
log = logging.getLogger("runner.client")
TITLE_CHARS = 80


@dataclass(frozen=True)
class Submission:
    """What ``submit`` takes. ``None`` means the configured default (RUNNER_*)."""

    prompt: str
    model: str | None = None
    queue: str | None = None
    max_steps: int | None = None
    script: str = ""
    session: str = ""
    workspace: str = ""  # a directory uploaded as the run's starting workspace
    # Budgets (0: none) and the run's own tools that need approval (issues 13, 14).
    max_tokens: int | None = None
    max_cost: float | None = None
    max_time: float | None = None  # seconds of running time
    max_tool_calls: int | None = None
    approve: tuple[str, ...] = ()
    if_busy: str = "queue"  # the session's turn before is live: queue behind it, or reject
    key: str = ""  # the fairness key (tenant): RUNNER_KEY_CONCURRENCY turns at once (issue 17)
    priority: str = "normal"  # high | normal | low: which of the queue's three it goes to
    system: str | None = None  # the system prompt (None: runner.prompts.DEFAULT_SYSTEM)
    context_tokens: int | None = None  # the model's context window (None: RUNNER_CONTEXT_TOKENS)


def open_client(settings: Settings | None = None) -> Client:
    """The client for ``settings`` (read from RUNNER_* and .env if not given).

    The one way front ends get a client: with RUNNER_API_URL set, one that goes through
    that ``runner serve`` (runner.http.remote) instead of Redis.
    """
    cfg = settings if settings is not None else load_settings()
    if cfg.api_url:
        try:
            from runner.http.remote import RemoteClient
        except ImportError as exc:
            raise BadInput(f"RUNNER_API_URL needs the serve extra ({exc.name} is missing)") from exc
        return RemoteClient(cfg)
    return Client(cfg)


class Client(RunReader):
    """The operations on runs, over one server (connected on first use)."""

    notes: tuple[str, ...] = ()  # what the last submit should tell the user (a session expired)

    # -- submit -----------------------------------------------------------------------

    @_boundary
    def submit(self, sub: Submission, progress: UploadProgress | None = None) -> str:
        """Check a submission, create its run and enqueue it; returns the run id.

        With ``sub.workspace``, the directory is stored first (``progress`` is told as
        it goes) and becomes the run's starting workspace.
        """
        from runner import carry, queueing, sessions
        from runner.workspace import access

        fields = self.check(sub)
        run_id = new_run_id()
        first: list[Event] = [StatusEvent(status=Status.QUEUED, reason="submitted")]
        if sub.workspace:
            cfg = self.settings
            blobs = self._blobs(run_id, ttl_ms=self.settings.retention_seconds * 1000)
            first.append(
                access.upload(
                    sub.workspace, blobs, cfg.workspace_max_bytes, cfg.workspace_ignore, progress
                )
            )
        first.append(MessageEvent(role="user", content=sub.prompt))
        plan = sessions.Plan()
        if sub.session:
            plan = sessions.plan_turn(self.store, run_id, sub.session, sub.if_busy, self.settings)
            fields["prev"] = plan.prev
            first[0] = StatusEvent(status=Status.QUEUED, reason=plan.reason)
        self.notes = (plan.note,) if plan.note else ()
        # The next turn takes over the limits, approvals, window and prompt (runner/carry.py).
        carried = carry.inherit(self.store, plan.prev, sub) if plan.prev else carry.Carried()
        fields.update(carried.fields)
        fields[carry.SNAPSHOT] = carry.snapshot(fields)
        system = sub.system if sub.system is not None else carried.system
        system = DEFAULT_SYSTEM if system is None else system
        ttl_ms = self.settings.retention_seconds * 1000
        prompts.save_system(self.redis, self.keys.system(run_id), system, ttl_ms)
        self.store.create(run_id, fields, first, sub.script, session=sub.session)
        # If this enqueue is lost, the sweeper finds a queued run that no queue holds.
        if not plan.held or sessions.ended(self.store, plan.prev):
            queueing.enqueue(
                self.rq, run_id, fields["queue"], self.settings.retention_seconds, fields["title"]
            )
        return run_id

    def check(self, sub: Submission) -> dict[str, str]:
        """The record fields of a valid submission; BadInput naming what is wrong."""
        from runner.fairness import priority_queue

        cfg = self.settings
        check_text(sub.prompt, "the prompt", cfg.max_prompt_bytes)
        model = cfg.model if sub.model is None else sub.model
        check_model_spec(model)
        queue = check_queue(cfg.queue if sub.queue is None else sub.queue)
        max_steps = cfg.max_steps if sub.max_steps is None else sub.max_steps
        if not 1 <= max_steps <= 100_000:
            raise BadInput(f"max steps must be 1 to 100000, not {max_steps}")
        if sub.script:
            self._check_script(sub.script)
        elif model == "scripted":
            raise BadInput("--model scripted needs --script FILE")
        if sub.session:
            check_session(sub.session)
        if sub.if_busy not in ("queue", "reject"):
            raise BadInput(f"--if-busy must be queue or reject, not {sub.if_busy[:20]!r}")
        if sub.system is not None:
            check_text(sub.system, "the system prompt", cfg.max_prompt_bytes)
        extra = {"key": check_tenant(sub.key)} if sub.key else {}
        fields = {
            **extra,
            "queue": priority_queue(queue, sub.priority),
            "model": model,
            "max_steps": str(max_steps),
            "session": sub.session,
            "title": " ".join(sub.prompt.split())[:TITLE_CHARS],
            **budgets.record_fields(sub, cfg),
        }
        window = cfg.context_tokens if sub.context_tokens is None else sub.context_tokens
        if window is not None:
            fields["context_tokens"] = str(check_window(window))
        return fields

    def _check_script(self, script: str) -> None:
        from runner.script import parse_script

        limit = self.settings.max_script_bytes
        try:
            size = len(script.encode("utf-8"))
        except UnicodeEncodeError:
            raise BadInput("bad script: it is not valid UTF-8") from None
        if size > limit:
            raise BadInput(f"script is over {limit} bytes (RUNNER_MAX_SCRIPT_BYTES)")
        parse_script(script)

    # -- read -------------------------------------------------------------------------

    @_boundary
    def runs(self, status: Status | None = None, limit: int = 50) -> list[RunRecord]:
        """Runs by last activity, newest first."""
        if not 1 <= limit <= 10_000:
            raise BadInput(f"limit must be 1 to 10000, not {limit}")
        return self.store.list_runs(status, limit)

    @_boundary
    def transcript(self, run_id: str) -> list[MessageEvent]:
        """The run's messages in order (``events.to_openai`` makes them OpenAI chat)."""
        from runner import sessions

        return sessions.conversation(self.store, run_id)  # earlier turns first

    @_boundary
    def workers_serving(self, queue: str) -> int:
        """How many workers listen on ``queue``."""
        from runner import queueing

        return queueing.workers_serving(self.rq, check_queue(queue))

    # -- workspace --------------------------------------------------------------------

    def _blobs(self, run_id: str, ttl_ms: int = 0) -> Blobs:
        from runner.workspace.blobs import open_blobs

        return open_blobs(self.settings, self.redis, self.keys, run_id, ttl_ms)

    @_boundary
    def workspace(self, run_id: str) -> Manifest:
        """The run's last committed workspace manifest (path -> entry)."""
        from runner.workspace.manifest import from_hash

        self.get(run_id)
        return from_hash(self.store.manifest(run_id))

    @_boundary
    def diff(self, run_id: str) -> str:
        """The run's workspace changes against its start, as a unified diff."""
        from runner.workspace import access

        self.get(run_id)
        return access.diff(self.store.events(run_id), self._blobs(run_id))

    @_boundary
    def pull(
        self, run_id: str, dest: str, force: bool = False, progress: PullProgress | None = None
    ) -> Written:
        """Write the run's last committed workspace to ``dest`` (empty unless ``force``)."""
        from runner.workspace import access

        return access.pull(self.workspace(run_id), dest, self._blobs(run_id), force, progress)

    # -- steer ------------------------------------------------------------------------

    @_boundary
    def cancel(self, run_id: str) -> Status:
        """Cancel a run; returns the status it had (a running one stops at a safe point).

        BadInput if it has already ended.
        """
        from runner import queueing, sessions

        record = self.get(run_id)
        before = self.store.cancel(run_id)
        if before is Status.QUEUED:
            queueing.remove(self.rq, run_id, record.queue)
        if before in TERMINAL:
            raise WrongState(f"run {run_id} has already ended ({before.value})")
        if before is not Status.RUNNING:  # ended now: its session's next turn may start
            sessions.ended_quietly(self.store, self.rq, self.settings, run_id)
        return before

    @_boundary
    def resume(self, run_id: str, adds: Adds | None = None) -> Status:
        """Requeue a suspended run, or one waiting for a budget, raising its limits by ``adds``.

        Returns the status it had; WrongState if it is neither (or waits for an approval).
        """
        from runner import parking

        return parking.unpark(self, run_id, "resume", adds=(adds or Adds()).checked())

    @_boundary
    def approve(self, run_id: str) -> Status:
        """Let a run waiting for an approval run its tool call; requeues it."""
        from runner import parking

        return parking.unpark(self, run_id, "approve")

    @_boundary
    def deny(self, run_id: str, reason: str = "") -> Status:
        """Refuse a run's tool call: the model reads the denial as its result; requeues it."""
        if reason:
            check_text(reason, "the reason", self.settings.max_prompt_bytes)
        from runner import parking

        return parking.unpark(self, run_id, "deny", reason)

    @_boundary
    def send(self, run_id: str, text: str) -> Status:
        """Queue a message for the run to take in before its next model call."""
        check_run_id(run_id)
        check_text(text, "the message", self.settings.max_prompt_bytes)
        self.get(run_id)
        status = self.store.send(run_id, text)
        if status in TERMINAL:
            raise WrongState(f"run {run_id} has ended ({status.value}); it takes no messages")
        return status

    @_boundary
    def sweep(self) -> dict[str, list[str]]:
        """Requeue runs whose worker died (expired lease), once, now."""
        from workers.sweeper import sweep

        report = sweep(self.store, self.rq, self.settings)
        return {
            "requeued": report.requeued,
            "suspended": report.suspended,
            "repushed": report.repushed,
        }
