"""The run store: a run's record and event stream in Redis, every write fenced by epoch.

Each write is one Lua script, so it is one round trip and atomic: the epoch check, the
stream append and the record update happen together or not at all. Scripts name their
keys (``K.record``, ``K.events``, ...) from ``runner.keys.SCRIPT_KEYS``.

What cannot be parsed is damage, reported and never hidden: a malformed id in a shared
index is skipped (and logged; the sweeper removes it), a record that does not validate
(``runner.record``) raises Damaged from ``get`` and is listed as damaged by
``get_many``/``list_runs``, and a run whose record exists while its stream is gone
raises Damaged from every stream read.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import redis

from runner import scripts
from runner.errors import BadInput, Damaged, NoSuchRun, StaleEpoch
from runner.events import TERMINAL, Event, Status, decode, encode
from runner.keys import RUN_KEYS, SCRIPT_KEYS, Keys, check_run_id, is_run_id
from runner.record import RunRecord, cut, listable, parse

# RunRecord and cut live in runner.record; callers may import them from here too.
__all__ = ["Beat", "Commit", "RunRecord", "RunStore", "commit_args", "cut", "key_names"]

log = logging.getLogger("runner.store")
KEY_CACHE_SIZE = 1024
LIST_PAGE = 500


def key_names() -> str:
    """The Lua lines that name the KEYS, generated from ``SCRIPT_KEYS``."""
    run = ", ".join(f"K.{name}" for name in RUN_KEYS)
    return f"{scripts.keys_table('K', SCRIPT_KEYS)}\nlocal RUN = {{{run}}}\n"


def _load_script(name: str) -> str:
    return key_names() + scripts.source("prelude") + "\n" + scripts.source(name)


@dataclass(frozen=True)
class Commit:
    """What a commit returns: the last stream id and how many inbox messages wait."""

    last_id: str
    inbox: int


class Beat(IntEnum):
    """The answer to a lease heartbeat."""

    FENCED = 0
    OK = 1
    CANCEL = 2


class RunStore:
    """Reads and fenced writes of runs."""

    def __init__(self, client: redis.Redis, keys: Keys, retention_seconds: int = 7 * 86400):
        # redis-py's annotations cannot tell a decoding client from a bytes one.
        self.redis: Any = client
        self.keys = keys
        self.retention_ms = retention_seconds * 1000
        self._key_cache: dict[str, list[str]] = {}  # building and checking them shows per step
        self._scripts = {
            name: client.register_script(_load_script(name))
            for name in (
                "create",
                "claim",
                "commit",
                "heartbeat",
                "finish",
                "requeue_dead",
                "resume",
                "cancel",
                "send",
                "drain_inbox",
                "park",
                "unpark",
                *("session_turn", "seed", "purge"),  # issue 14: runner.sessions
            )
        }
        # Ending an attempt may write its few hundred bytes to a server past maxmemory,
        # so a run parked by a full server still says why (guarantee 10). A separate
        # script: the flags need Redis 7, and the plain one is used whenever memory allows.
        self._scripts["finish_oom"] = client.register_script(
            "#!lua flags=allow-oom\n" + _load_script("finish")
        )

    def _keys(self, run_id: str) -> list[str]:
        """The KEYS every script takes, in ``SCRIPT_KEYS`` order (without a session)."""
        cached = self._key_cache.get(run_id)
        if cached is None:
            if len(self._key_cache) >= KEY_CACHE_SIZE:
                self._key_cache.clear()
            cached = self._key_cache[run_id] = self.keys.script_keys(run_id)
        return cached

    def script_sources(self) -> dict[str, str]:
        """Each Lua script's source by name (``runner doctor`` loads them all)."""
        return {name: str(script.script) for name, script in self._scripts.items()}

    def _call(self, name: str, run_id: str, *args: Any, keys: list[str] | None = None) -> Any:
        try:
            return self._scripts[name](keys=keys or self._keys(run_id), args=[run_id, *args])
        except redis.ResponseError as exc:
            message = str(exc)
            if "STALE" in message:
                raise StaleEpoch(f"run {run_id}: {message.split('STALE ', 1)[-1]}") from exc
            if "EXISTS" in message:
                raise BadInput(f"run {run_id} already exists") from exc
            raise

    # -- writes -------------------------------------------------------------------------

    def create(
        self,
        run_id: str,
        fields: dict[str, str],
        events: Sequence[Event],
        script: str = "",
        session: str = "",
    ) -> str:
        """Create a queued run with its first events; returns the last stream id.

        With ``session`` (a checked name), the run joins that session's set and the
        sessions index in the same script; both expire retention after the newest turn.
        """
        payload = json.dumps([list(encode(e)) for e in events])
        keys = self.keys.script_keys(run_id, session)
        args = (json.dumps(fields), payload, script, session, self.retention_ms)
        return str(self._call("create", run_id, *args, keys=keys))

    def claim(self, run_id: str, worker: str, lease: float, trace: str = "") -> int | None:
        """Start an attempt on a queued run: a new epoch, or None if it is not queued."""
        ok, value = self._call("claim", run_id, worker, int(lease * 1000), self.retention_ms, trace)
        return int(value) if ok == 1 else None

    def commit(
        self,
        run_id: str,
        epoch: int,
        events: Sequence[Event],
        seen: int,
        steps: int = 1,
        blobs: Mapping[str, bytes] | None = None,
    ) -> Commit:
        """Append events for attempt ``epoch`` to a stream of ``seen`` events.

        ``blobs`` (digest -> content) go into the run's blob hash in the same script,
        before the events that name them. Raises StaleEpoch if the attempt no longer owns
        the run. Safe to retry: a commit whose reply was lost is not applied twice.
        """
        last, inbox = self._call("commit", run_id, *commit_args(epoch, events, seen, steps, blobs))
        return Commit(str(last), int(inbox))

    def heartbeat(self, run_id: str, epoch: int, lease_seconds: float) -> Beat:
        """Refresh the lease of attempt ``epoch``."""
        return Beat(int(self._call("heartbeat", run_id, epoch, int(lease_seconds * 1000))))

    def finish(
        self,
        run_id: str,
        epoch: int,
        status: Status,
        worker: str = "",
        reason: str = "",
        error: str = "",
        allow_oom: bool = False,
    ) -> str:
        """End attempt ``epoch`` with ``status`` (terminal, or queued for a handoff).

        ``allow_oom``: write even if the server is out of memory.
        """
        ttl = self.retention_ms if status in TERMINAL else 0
        script = "finish_oom" if allow_oom else "finish"
        return str(self._call(script, run_id, epoch, status.value, worker, reason, error, ttl))

    def requeue_dead(
        self,
        run_id: str,
        reason: str,
        max_dirty: int,
        epoch: int | None = None,
        lease_gone: bool = True,
    ) -> Status | None:
        """Requeue (or suspend, after a crash loop) an attempt that died without handing off."""
        result = self._call(
            "requeue_dead",
            run_id,
            "" if epoch is None else epoch,
            reason,
            "1" if lease_gone else "0",
            max_dirty,
        )
        return Status(result) if result else None

    def resume(self, run_id: str) -> Status:
        """Put a suspended or waiting run back in the queue; returns the status it had."""
        return self._status_or_missing(run_id, self._call("resume", run_id))

    def cancel(self, run_id: str) -> Status:
        """Cancel a run (a running one at its next safe point); returns the status it had."""
        return self._status_or_missing(run_id, self._call("cancel", run_id, self.retention_ms))

    def send(self, run_id: str, text: str) -> Status:
        """Queue a user message for a run that has not ended; returns its status."""
        return self._status_or_missing(run_id, self._call("send", run_id, text))

    def drain_inbox(self, run_id: str, epoch: int) -> int:
        """Move waiting inbox messages into the transcript; returns how many."""
        return len(self._call("drain_inbox", run_id, epoch))

    @staticmethod
    def _status_or_missing(run_id: str, value: str) -> Status:
        if not value:
            raise NoSuchRun(f"no such run: {run_id}")
        return Status(value)

    # -- reads --------------------------------------------------------------------------

    def get(self, run_id: str) -> RunRecord:
        """The run's record; NoSuchRun if there is none, Damaged if it does not validate."""
        raw = self.redis.hgetall(self.keys.record(check_run_id(run_id)))
        if not raw:
            raise NoSuchRun(f"no such run: {run_id}")
        return parse(run_id, raw)

    def get_many(self, run_ids: Sequence[str]) -> list[RunRecord]:
        """Records of several runs in one round trip; missing ones are skipped.

        A malformed id is skipped (and logged); a record that does not validate comes
        back as a placeholder with ``damaged`` set, so a listing never breaks on it.
        """
        ids = [i for i in run_ids if _well_formed(i, "get_many")]
        pipe = self.redis.pipeline(transaction=False)
        for run_id in ids:
            pipe.hgetall(self.keys.record(run_id))
        return [listable(i, raw) for i, raw in zip(ids, pipe.execute(), strict=True) if raw]

    def script(self, run_id: str) -> str | None:
        """The scripted model's script stored with the run, if any."""
        value = self.redis.get(self.keys.script(run_id))
        return None if value is None else str(value)

    def manifest(self, run_id: str) -> dict[str, str]:
        """The run's last committed workspace manifest as stored (path -> entry JSON)."""
        raw: dict[str, str] = self.redis.hgetall(self.keys.manifest(run_id))
        return raw

    def events(self, run_id: str, after: str = "-", count: int | None = None) -> list[Event]:
        """Events after stream id ``after`` (exclusive; ``-`` for all), oldest first."""
        start = "-" if after in ("-", "0", "0-0") else f"({after}"
        entries = self.redis.xrange(self.keys.events(run_id), min=start, count=count)
        if not entries:
            self._check_stream(run_id)
        return [decode(run_id, eid, fields) for eid, fields in entries]

    def tail(self, run_id: str, n: int) -> list[Event]:
        """The last ``n`` events, oldest first."""
        entries = self.redis.xrevrange(self.keys.events(run_id), count=n)
        if not entries:
            self._check_stream(run_id)
        return [decode(run_id, eid, fields) for eid, fields in reversed(entries)]

    def read(self, run_id: str, after: str, block_ms: int) -> list[Event]:
        """Block up to ``block_ms`` for events after ``after``."""
        reply = self.redis.xread({self.keys.events(run_id): after}, block=block_ms, count=500)
        if not reply:
            self._check_stream(run_id)
            return []
        _, entries = reply[0]
        return [decode(run_id, eid, fields) for eid, fields in entries]

    def _check_stream(self, run_id: str) -> None:
        """Raise Damaged if the run's record exists but its stream does not.

        Asked only when a read came back empty: a run always has its submit events, so
        the normal replay stays one round trip.
        """
        pipe = self.redis.pipeline(transaction=False)
        pipe.exists(self.keys.events(run_id))
        pipe.exists(self.keys.record(run_id))
        stream, record = pipe.execute()
        if record and not stream:
            raise Damaged(f"run {run_id}: damaged: its event stream is gone (evicted or deleted)")

    def list_runs(self, status: Status | None = None, limit: int = 50) -> list[RunRecord]:
        """Runs by last activity, newest first, optionally of one status."""
        if status in (Status.RUNNING, Status.QUEUED):
            ids = self.active_ids() if status is Status.RUNNING else self.queued_ids()
            ids.reverse()
            return [r for r in self.get_many(ids) if r.status is status][:limit]
        found: list[RunRecord] = []
        # Page through the index so a filter reads only as far back as it must.
        for start in range(0, self.redis.zcard(self.keys.runs), LIST_PAGE):
            ids = self.redis.zrevrange(self.keys.runs, start, start + LIST_PAGE - 1)
            found += [r for r in self.get_many(ids) if status is None or r.status is status]
            if len(found) >= limit:
                break
        return found[:limit]

    def active_ids(self) -> list[str]:
        """Ids of runs whose status is running (malformed entries skipped)."""
        return self._members(self.keys.active)

    def queued_ids(self) -> list[str]:
        """Ids of runs whose status is queued (malformed entries skipped)."""
        return self._members(self.keys.queued)

    def _members(self, key: str) -> list[str]:
        return sorted(i for i in self.redis.smembers(key) if _well_formed(i, key))


def commit_args(
    epoch: int,
    events: Sequence[Event],
    seen: int,
    steps: int,
    blobs: Mapping[str, bytes] | None = None,
) -> list[Any]:
    """``commit.lua``'s ARGV after the run id (``replication`` sends the same)."""
    flat: list[Any] = [epoch, steps, seen, len(blobs or ())]
    for digest, data in (blobs or {}).items():
        flat += (digest, data)
    for event in events:
        flat.extend(encode(event))
    return flat


def _well_formed(run_id: str, where: str) -> bool:
    if is_run_id(run_id):
        return True
    log.warning("not a run id; skipped", extra={"index": where, "entry": cut(str(run_id))})
    return False
