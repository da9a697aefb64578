"""Fork: a new run from the first N messages of another, with its workspace as it was then.

The cut never separates a tool call from its result: N is rounded down to the last
point where every tool call before it has its result (:func:`safe_cut`). The new run
carries those messages the way the source did: what the source continued (its history)
stays history, and the source's own messages become the fork's own, so the fork goes on
exactly as the source would have from there (the scripted model at the same step). The
workspace is the source's fold up to the cut (its start, then every step before the
cut), copied with its blobs. Model, script, queue, tenant, system prompt, limits and
approvals are the source's, and the usage of the copied steps comes with them, so the
fork counts against its budgets what the source had spent at the cut (runner/carry.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import redis

from runner import carry, prompts, queueing, sessions
from runner.errors import BadInput
from runner.events import Event, MessageEvent, Status, StatusEvent, UsageEvent, WorkspaceEvent
from runner.keys import check_run_id, check_session, new_run_id
from runner.settings import Settings
from runner.store import RunStore
from runner.workspace import manifest as mf

M = TypeVar("M", MessageEvent, UsageEvent)


@dataclass(frozen=True)
class Forked:
    """The new run, the cut asked for and the cut made (``at`` <= ``asked``)."""

    run_id: str
    asked: int
    at: int

    @property
    def rounded(self) -> bool:
        return self.at != self.asked


def safe_cut(messages: Sequence[MessageEvent], n: int) -> int:
    """The largest cut <= ``n`` that leaves no tool call without its result."""
    best, pending = 0, set[str]()
    for i, message in enumerate(messages[: max(n, 0)], 1):
        if message.role == "assistant":
            pending = {c.id for c in message.tool_calls or []}
        elif message.role == "tool":
            pending.discard(message.tool_call_id or "")
        if not pending:
            best = i
    return best


def workspace_at(events: Sequence[Event], own_messages: int) -> mf.Manifest:
    """The workspace after the run's first ``own_messages`` messages: its start (epoch 0)
    and every step committed before its next message."""
    manifest: mf.Manifest = {}
    seen = 0
    for event in events:
        if isinstance(event, MessageEvent):
            seen += 1
        elif isinstance(event, WorkspaceEvent) and (event.epoch == 0 or seen <= own_messages):
            mf.apply(manifest, event.changes)
    return manifest


def fork(
    store: RunStore,
    rq_conn: redis.Redis,
    settings: Settings,
    source: str,
    at: int,
    session: str = "",
) -> Forked:
    """Create and enqueue the fork of ``source`` at message ``at``."""
    check_run_id(source)
    if at < 1:
        raise BadInput(f"--at must be 1 or more, not {at}")
    if session:
        _check_new_session(store, settings, check_session(session))
    record = store.get(source)
    events = store.events(source)
    before = sessions.history(store, source)
    own = [e for e in events if isinstance(e, MessageEvent)]
    cut = safe_cut(before + own, at)
    if cut == 0:
        raise BadInput(f"nothing to fork: run {source} has no complete message up to {at}")
    history = before[:cut]
    copied = own[: max(cut - len(before), 0)]
    run_id = new_run_id()
    reason = f"forked from {source} at message {cut}"
    first: list[Event] = [StatusEvent(status=Status.QUEUED, reason=reason)]
    first += carried_steps(events, len(copied))
    ttl = settings.retention_seconds * 1000  # until the create persists them
    manifest = workspace_at(events, len(copied))
    change = sessions.copy_workspace(store, settings, source, run_id, manifest, ttl)
    if change is not None:
        first.append(change)
    if history:
        store.redis.set(store.keys.history(run_id), sessions.dump_history(history), px=ttl)
    # The same turn taken another way: its limits as they are now, its prompt, its tenant.
    now, submitted = carry.given(store, source, current=True), carry.given(store, source)
    if now.system is not None:
        prompts.save_system(store.redis, store.keys.system(run_id), now.system, ttl)
    tenant = store.redis.hget(store.keys.record(source), "key")
    fields = {
        **({"key": str(tenant)} if tenant else {}),
        **now.fields,
        "queue": record.queue,
        "model": record.model,
        "session": session,
        "title": f"fork of {source} at {cut}: {record.title}"[:80],
        "forked": f"{source}:{cut}",
        # Its next turn gets what the conversation was given (runner/carry.py).
        carry.SNAPSHOT: carry.snapshot(submitted.fields),
    }
    store.create(run_id, fields, first, store.script(source) or "", session=session)
    queueing.enqueue(rq_conn, run_id, record.queue, settings.retention_seconds, fields["title"])
    return Forked(run_id, at, cut)


def carried_steps(events: Sequence[Event], own_messages: int) -> list[MessageEvent | UsageEvent]:
    """The run's first ``own_messages`` messages with the usage events among them, in order.

    The usage is what those steps cost: the fork counts it against its budgets, as it
    counts the copied steps against its step limit (runner/carry.py).
    """
    out: list[MessageEvent | UsageEvent] = []
    seen = 0
    for event in events:
        if isinstance(event, MessageEvent):
            seen += 1
            if seen > own_messages:
                break
            out.append(_fresh(event))
        elif isinstance(event, UsageEvent) and seen:
            out.append(_fresh(event))
    return out


def _fresh(message: M) -> M:
    """The message without its stream envelope (the fork's stream gives it a new one)."""
    return message.model_copy(update={"id": "", "ts": "", "epoch": 0})


def _check_new_session(store: RunStore, settings: Settings, session: str) -> None:
    """A fork starts a session: NAME must have no turns, or have expired."""
    score = store.redis.zscore(store.keys.sessions, session)
    if not store.redis.exists(store.keys.session(session)) or score is None:
        return
    seconds, micros = store.redis.time()
    now_ms = int(seconds) * 1000 + int(micros) // 1000
    if now_ms - float(score) <= settings.session_idle_seconds * 1000:
        raise BadInput(f"session {session} already has turns: fork into a new session name")
    store.redis.delete(store.keys.session(session))  # expired: the fork starts it anew
