"""Listing, renaming and deleting sessions (``runner sessions``, ``runner session ...``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import redis

from runner.client import Client, Submission
from runner.errors import BadInput, WrongState
from runner.events import TERMINAL
from runner.fairness import PRIORITIES
from runner.keys import SESSION_PATTERN, Keys, check_session
from runner.purge import purge_run
from runner.settings import Settings
from runner.store import RunStore

RENAME_TRIES = 5


@dataclass(frozen=True)
class SessionInfo:
    """One session as listed: last activity, turns, its newest turn and that turn's status."""

    name: str
    active_ms: int
    turns: int
    last_turn: str
    last_status: str
    expired: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def list_sessions(store: RunStore, settings: Settings, limit: int = 50) -> list[SessionInfo]:
    """Sessions by last activity, newest first (a malformed index entry is skipped)."""
    entries = store.redis.zrevrange(store.keys.sessions, 0, limit - 1, withscores=True)
    named = [(str(n), int(s)) for n, s in entries if SESSION_PATTERN.fullmatch(str(n))]
    pipe = store.redis.pipeline(transaction=False)
    for name, _ in named:
        pipe.zcard(store.keys.session(name))
        pipe.zrevrange(store.keys.session(name), 0, 0)
    replies = pipe.execute()
    lasts = [str(r[0]) if r else "" for r in replies[1::2]]
    for last in lasts:
        pipe.hget(store.keys.record(last), "status") if last else pipe.echo("")
    statuses = pipe.execute()
    seconds, micros = store.redis.time()
    now_ms = int(seconds) * 1000 + int(micros) // 1000
    idle_ms = settings.session_idle_seconds * 1000
    return [
        SessionInfo(
            name,
            score,
            int(turns),
            last,
            str(status or ("gone" if last else "")),
            now_ms - score > idle_ms,
        )
        for (name, score), turns, last, status in zip(
            named, replies[0::2], lasts, statuses, strict=True
        )
    ]


def rename(store: RunStore, old: str, new: str) -> int:
    """Rename session ``old`` to ``new``; returns how many turns it has.

    One optimistic transaction: it watches the session, the new name and every turn's
    record, and starts again if any of them changed before it applied.
    """
    check_session(old)
    check_session(new)
    if old == new:
        raise BadInput("the new name is the old one")
    keys = store.keys
    for _ in range(RENAME_TRIES):
        with store.redis.pipeline() as pipe:
            try:
                return _rename(pipe, keys, old, new)
            except redis.WatchError:
                continue
    raise WrongState(f"session {old} is changing too fast; try again")


def _rename(pipe: Any, keys: Keys, old: str, new: str) -> int:
    pipe.watch(keys.session(old), keys.session(new), keys.sessions)
    if pipe.exists(keys.session(new)) or pipe.zscore(keys.sessions, new) is not None:
        raise WrongState(f"session {new} already exists")
    if not pipe.exists(keys.session(old)):
        raise BadInput(f"no such session: {old}")
    turns = [str(t) for t in pipe.zrange(keys.session(old), 0, -1)]
    records = [keys.record(t) for t in turns]
    pipe.watch(*records)  # one that expires meanwhile must not come back as a stub
    kept = [r for r in records if pipe.exists(r)]
    score = pipe.zscore(keys.sessions, old)
    pipe.multi()
    for record in kept:
        pipe.hset(record, "session", new)
    pipe.rename(keys.session(old), keys.session(new))
    pipe.zrem(keys.sessions, old)
    if score is not None:
        pipe.zadd(keys.sessions, {new: score})
    pipe.execute()
    return len(turns)


def delete(store: RunStore, rq_conn: Any, settings: Settings, name: str) -> int:
    """Delete session ``name`` and its turns (all ended); returns how many turns went.

    WrongState, and nothing deleted, while one of its turns has not ended.
    """
    check_session(name)
    keys = store.keys
    turns = [str(t) for t in store.redis.zrange(keys.session(name), 0, -1)]
    if not turns and store.redis.zscore(keys.sessions, name) is None:
        raise BadInput(f"no such session: {name}")
    live = [r for r in store.get_many(turns) if r.status not in TERMINAL]
    if live:
        first = live[0]
        raise WrongState(
            f"session {name} has a turn that has not ended ({first.id} is "
            f"{first.status.value}): cancel it first"
        )
    gone = 0
    for run_id in turns:
        try:
            purge_run(store, rq_conn, settings, run_id)
            gone += 1
        except BadInput:
            continue  # expired already
    pipe = store.redis.pipeline(transaction=False)
    pipe.delete(keys.session(name))
    pipe.zrem(keys.sessions, name)
    pipe.execute()
    return gone


def next_turn(client: Client, run_id: str, text: str) -> tuple[str, str]:
    """Start the next turn of an ended run's session with ``text``: (new run id, session).

    A run without a session gets one now, named after it, so that its turns from here
    on continue it (``runner send`` to an ended run).
    """
    store = client.store
    record = client.get(run_id)
    if record.status not in TERMINAL:
        raise WrongState(f"run {run_id} has not ended ({record.status.value})")
    session = record.session or _adopt(store, run_id, record.created_ms, record.updated_ms)
    # Limits, approvals, window and system prompt come with the turn (runner/carry.py).
    queue, priority = split_queue(record.queue)
    tenant = store.redis.hget(store.keys.record(run_id), "key")
    sub = Submission(
        prompt=text,
        model=record.model,
        queue=queue,
        priority=priority,
        key=str(tenant or ""),
        script=store.script(run_id) or "",
        session=session,
    )
    return client.submit(sub), session


def split_queue(queue: str) -> tuple[str, str]:
    """A run's RQ queue as the queue and priority it was submitted with (``Q:high``)."""
    base, _, suffix = queue.rpartition(":")
    if base and suffix in PRIORITIES and suffix != "normal":
        return base, suffix
    return queue, "normal"


def _adopt(store: RunStore, run_id: str, created_ms: int, active_ms: int) -> str:
    """Make a sessionless run the first turn of a session named after it."""
    keys = store.keys
    pipe = store.redis.pipeline(transaction=True)
    pipe.hset(keys.record(run_id), "session", run_id)
    pipe.zadd(keys.session(run_id), {run_id: created_ms})
    pipe.zadd(keys.sessions, {run_id: active_ms})
    pipe.execute()
    return run_id
