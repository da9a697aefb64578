"""Sessions: a run as the next turn of a conversation (issue 14, point 1).

A session is the sorted set of its turns (``Keys.session``) plus its entry in the
sessions index. A turn's record names the turn before it (``prev``). Three moments:

- Submit (:func:`plan_turn`): one script reserves the turn's place as the session's
  newest, atomically with the look at the turn before it. That turn still live means
  the session is busy: ``--if-busy reject`` refuses, ``queue`` (the default) creates the
  run ``queued`` but *held*: it is in no RQ queue until the turn before it ends.
- The end of a turn (:func:`turn_ended`), from whoever ends it (the worker, a cancel, a
  purge): the held turn after it is enqueued; the sweeper does the same as a backstop
  (:func:`still_held` tells it which to leave alone).
- The first attempt of a turn (:func:`prepare`, from the agent loop): the conversation
  of the turn before it (its history, then its own messages) is copied into this run's
  history key, and that turn's last workspace (manifest and blobs) into this run, in one
  fenced script (``seed``). Copied, not referenced: older turns may expire or be purged.

The history is fed to the transcript fold ahead of the run's own events, so the model
sees it while ``own_steps`` (the scripted model's step, ``max_steps``) counts only this
run's own assistant messages.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from runner import queueing
from runner.errors import BadInput, Damaged, NoSuchRun, RunnerError, WorkspaceError, WrongState
from runner.events import TERMINAL, MessageEvent, Status, WorkspaceEvent, encode, to_openai
from runner.settings import Settings
from runner.store import RunStore
from runner.workspace import manifest as mf
from runner.workspace.blobs import open_blobs

log = logging.getLogger("runner.sessions")
LIVE = ("queued", "running", "waiting", "suspended")
RESERVE_TRIES = 5
MESSAGE_FIELDS = {"role", "content", "tool_calls", "tool_call_id", "name"}


@dataclass(frozen=True)
class Plan:
    """Where a new turn goes in its session.

    ``prev``: the turn it continues ("" for the first). ``held``: it waits for ``prev``
    to end before it is enqueued. ``note``: something the user should be told.
    """

    prev: str = ""
    held: bool = False
    note: str = ""

    @property
    def reason(self) -> str:
        """The reason of the run's first ``queued`` status."""
        if self.held:
            return f"submitted; waits for turn {self.prev} of its session to end"
        return f"submitted; {self.note}" if self.note else "submitted"


# -- submit ---------------------------------------------------------------------------


def plan_turn(store: RunStore, run_id: str, session: str, if_busy: str, settings: Settings) -> Plan:
    """Reserve ``run_id`` as the newest turn of ``session``; WrongState if busy and rejecting.

    Optimistic: the newest turn is read, then the script checks it is still the newest
    (another submit may have come in between) and tries again if not.
    """
    keys = store.keys
    for _ in range(RESERVE_TRIES):
        newest = store.redis.zrevrange(keys.session(session), 0, 0)
        prev = str(newest[0]) if newest else ""
        kind, detail = store._call(
            "session_turn",
            run_id,
            prev,
            if_busy,
            settings.session_idle_seconds * 1000,
            settings.retention_seconds * 1000,
            session,
            keys=keys.script_keys(run_id, session, prev),
        )
        if kind == "retry":
            continue
        return _plan(kind, str(detail), prev, session, settings)
    raise WrongState(f"session {session} is changing too fast; try again")


def _plan(kind: str, detail: str, prev: str, session: str, settings: Settings) -> Plan:
    if kind == "busy":
        raise WrongState(
            f"session {session} is busy: turn {prev} is {detail} (--if-busy queue waits for it)"
        )
    if kind == "expired":
        idle = _duration(settings.session_idle_seconds)
        return Plan(note=f"session {session} had expired (idle over {idle}); a new conversation")
    if kind == "gone":
        return Plan(note=f"session {session}'s last turn is gone (expired or purged); a new start")
    return Plan(prev=prev, held=kind == "held")


def _duration(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


# -- the first attempt ------------------------------------------------------------------


def prepare(store: RunStore, settings: Settings, run_id: str, epoch: int) -> list[dict[str, Any]]:
    """The messages this run continues (OpenAI shape), seeding them on the first attempt.

    A run without a ``prev`` and without a history key continues nothing (one round
    trip). Safe to retry: the seed script writes once.
    """
    pipe = store.redis.pipeline(transaction=False)
    pipe.get(store.keys.history(run_id))
    pipe.hget(store.keys.record(run_id), "prev")
    raw, prev = pipe.execute()
    if raw is None and prev:
        raw = _seed(store, settings, run_id, epoch, str(prev))
    try:
        return [to_openai(m) for m in parse_history(raw)]
    except Damaged as exc:
        log.warning("history not read", extra={"run": run_id, "error": str(exc)})
        return []


def _seed(store: RunStore, settings: Settings, run_id: str, epoch: int, prev: str) -> str:
    """Copy ``prev``'s conversation and last workspace into ``run_id``; the history JSON."""
    try:
        messages = conversation(store, prev)
    except (NoSuchRun, Damaged) as exc:
        log.warning("session history lost", extra={"run": run_id, "prev": prev, "error": str(exc)})
        messages = []
    raw = dump_history(messages)
    change = ""
    try:
        if not store.manifest(run_id):  # a --workspace of its own wins
            last = mf.from_hash(store.manifest(prev))
            event = copy_workspace(store, settings, prev, run_id, last)
            change = encode(event)[1] if event is not None else ""
    except (WorkspaceError, BadInput, OSError) as exc:
        log.warning("session workspace not carried", extra={"run": run_id, "error": str(exc)})
    store._call("seed", run_id, epoch, raw, change)
    return raw


def copy_workspace(
    store: RunStore,
    settings: Settings,
    source: str,
    dest: str,
    manifest: mf.Manifest,
    ttl_ms: int = 0,
) -> WorkspaceEvent | None:
    """Copy the blobs ``manifest`` names from ``source``'s store to ``dest``'s; its event.

    None for an empty manifest. The blobs are stored before the event is committed, so
    a committed workspace always names content that exists.
    """
    if not manifest:
        return None
    cfg = settings
    digests = [e.hash for e in manifest.values() if e.kind == "file" and e.hash]
    found = open_blobs(cfg, store.redis, store.keys, source).get_many(digests)
    # ttl_ms: for a run not created yet (its create persists them).
    open_blobs(cfg, store.redis, store.keys, dest, ttl_ms).put(found)
    files, size = mf.totals(manifest)
    return WorkspaceEvent(changes=list(manifest.values()), files=files, bytes=size)


def conversation(store: RunStore, run_id: str) -> list[MessageEvent]:
    """The run's whole conversation: what it continues, then its own messages."""
    store.get(run_id)  # NoSuchRun rather than an empty conversation
    own = [e for e in store.events(run_id) if isinstance(e, MessageEvent)]
    return history(store, run_id) + own


def history(store: RunStore, run_id: str) -> list[MessageEvent]:
    """The messages ``run_id`` continues (a session's earlier turns, a fork's source)."""
    return parse_history(store.redis.get(store.keys.history(run_id)))


def dump_history(messages: Iterable[MessageEvent]) -> str:
    """The history key's JSON: each message's own fields (no stream envelope)."""
    return json.dumps(
        [m.model_dump(mode="json", include=MESSAGE_FIELDS, exclude_none=True) for m in messages],
        ensure_ascii=False,
    )


def parse_history(raw: str | None) -> list[MessageEvent]:
    """The messages of a history key (empty if there is none)."""
    if not raw:
        return []
    try:
        return [MessageEvent.model_validate(m) for m in json.loads(raw)]
    except ValueError as exc:
        raise Damaged(f"damaged session history: {exc}") from exc


# -- the end of a turn ------------------------------------------------------------------


def turn_ended(store: RunStore, rq_conn: Any, settings: Settings, run_id: str) -> list[str]:
    """After ``run_id`` ended: enqueue the turns held for it; returns their ids.

    Also marks the session active now, and keeps the turn at least as long as the
    session may still be continued (RUNNER_SESSION_IDLE_SECONDS).
    """
    session, status = store.redis.hmget(store.keys.record(run_id), "session", "status")
    if not session or status not in TERMINAL:
        return []
    keys = store.keys
    now_ms = _server_ms(store)
    pipe = store.redis.pipeline(transaction=False)
    pipe.zadd(keys.sessions, {session: now_ms}, xx=True)
    if settings.session_idle_seconds > settings.retention_seconds:
        for key in keys.run_keys(run_id):
            pipe.pexpire(key, settings.session_idle_seconds * 1000, gt=True)
    pipe.zrange(keys.session(session), 0, -1)
    members = [str(m) for m in pipe.execute()[-1]]
    released = []
    for follower, (prev, status, queue, title) in _turn_fields(store, members).items():
        if prev == run_id and status == Status.QUEUED.value:
            queueing.enqueue(rq_conn, follower, queue, settings.retention_seconds, title)
            released.append(follower)
            log.info("held turn released", extra={"run": follower, "prev": run_id})
    return released


def still_held(store: RunStore, run_ids: Sequence[str]) -> set[str]:
    """Which of these queued runs wait for a turn that has not ended (the sweeper skips them)."""
    fields = _turn_fields(store, run_ids)
    prevs = sorted({f[0] for f in fields.values() if f[0]})
    pipe = store.redis.pipeline(transaction=False)
    for prev in prevs:
        pipe.hget(store.keys.record(prev), "status")
    live = {p for p, s in zip(prevs, pipe.execute(), strict=True) if s in LIVE}
    return {run_id for run_id, f in fields.items() if f[0] in live}


def _turn_fields(store: RunStore, run_ids: Sequence[str]) -> dict[str, tuple[str, ...]]:
    pipe = store.redis.pipeline(transaction=False)
    for run_id in run_ids:
        pipe.hmget(store.keys.record(run_id), "prev", "status", "queue", "title")
    return {
        run_id: tuple(v or "" for v in values)
        for run_id, values in zip(run_ids, pipe.execute(), strict=True)
        if values[1]
    }


def ended(store: RunStore, run_id: str) -> bool:
    """Whether ``run_id`` has ended (a held turn whose turn before ended meanwhile)."""
    return store.redis.hget(store.keys.record(run_id), "status") in TERMINAL


def ended_quietly(store: RunStore, rq_conn: Any, settings: Settings, run_id: str) -> None:
    """:func:`turn_ended` for callers that must not fail on it (the sweeper is a backstop)."""
    try:
        turn_ended(store, rq_conn, settings, run_id)
    except (RunnerError, redis.RedisError, OSError) as exc:
        log.warning("held turn not released", extra={"run": run_id, "error": str(exc)})


def _server_ms(store: RunStore) -> int:
    seconds, micros = store.redis.time()
    return int(seconds) * 1000 + int(micros) // 1000
