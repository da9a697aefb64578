"""Live output: a run's in-flight text and progress notes, beside its committed stream.

Deltas go to a separate stream per run (``Keys.deltas``), capped (``XADD MAXLEN ~``)
and short-lived (``PEXPIRE`` on every write), never read by a turn and never part of
the transcript: they may be lost without harm, and the committed event that follows
supersedes them. The worker side is :class:`DeltaWriter`, which batches chunks so a
fast model costs one round trip per flush interval, not one per token. The follower
side is :class:`LiveReader`: one ``XREAD`` on both streams, the committed cursor
advancing only on committed events (so follow stays gapless), deltas that precede an
event already seen dropped as stale.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import redis

from runner.errors import CorruptEvent
from runner.events import SCHEMA_VERSION, DeltaEvent, Event, decode, decode_delta
from runner.keys import Keys

log = logging.getLogger("runner.deltas")
FLUSH_BYTES = 4096  # a buffer this big is written at once, without waiting for the timer


def stream_order(stream_id: str) -> tuple[int, int]:
    """A stream id as a sortable pair (``-`` and ``0`` sort first)."""
    ms, _, seq = stream_id.partition("-")
    if not ms.isdigit():
        return (0, 0)
    return (int(ms), int(seq) if seq.isdigit() else 0)


@dataclass
class _Chunk:
    kind: str
    text: str
    after: str
    call: int | None = None
    name: str | None = None

    def fields(self, epoch: int) -> dict[str, str]:
        data: dict[str, Any] = {"kind": self.kind, "text": self.text, "after": self.after}
        if self.call is not None:
            data.update(call=self.call, name=self.name or "")
        payload = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
        return {"v": str(SCHEMA_VERSION), "type": "delta", "epoch": str(epoch), "data": payload}


class DeltaWriter:
    """Batches one attempt's deltas and writes them from a background thread.

    Providers call :meth:`text`, :meth:`args`, :meth:`note` and :meth:`reset` (the
    ``Sink`` of ``workers.providers``); the agent calls :meth:`begin` before each model
    call with the id of the last committed event, and :meth:`discard` once the answer is
    committed. Chunks of the same kind are merged; a flush writes what is buffered as one
    pipeline, at most one per ``flush_seconds`` (sooner past ``FLUSH_BYTES``): the first
    chunk after a quiet spell is written at once, the rest of a fast stream is merged.
    Write errors are logged and dropped: a delta is never worth a retry.
    """

    def __init__(
        self,
        client: redis.Redis,
        key: str,
        epoch: int,
        *,
        flush_seconds: float = 0.08,
        maxlen: int = 1000,
        ttl_seconds: int = 120,
        fields: dict[str, Any] | None = None,
    ) -> None:
        self.redis: Any = client
        self.key = key
        self.epoch = epoch
        self.flush_seconds = flush_seconds
        self.maxlen = maxlen
        self.ttl_ms = ttl_seconds * 1000
        self.fields = fields or {}
        self.writes = 0  # round trips made (for tests and the bench)
        self._cond = threading.Condition()
        self._pending: list[_Chunk] = []
        self._size = 0
        self._first = 0.0
        self._flushed = -1e9  # when the last batch was taken (monotonic)
        self._after = "-"
        self._closed = False
        self._thread: threading.Thread | None = None

    # -- the sink ---------------------------------------------------------------------

    def text(self, chunk: str) -> None:
        """Streamed text of the model's answer."""
        self._push("text", chunk)

    def args(self, call: int, name: str, chunk: str) -> None:
        """Streamed arguments (JSON text) of tool call number ``call``."""
        self._push("args", chunk, call, name)

    def note(self, text: str) -> None:
        """A progress note: what a person watching would otherwise take for a hang."""
        self._push("note", text)

    def reset(self) -> None:
        """The call starts over (a retry): what was streamed so far is superseded."""
        with self._cond:
            self._pending.clear()
            self._size = 0
        self._push("reset", "")

    # -- the agent's side -------------------------------------------------------------

    def begin(self, after: str) -> None:
        """A new model call, after committed event ``after``."""
        with self._cond:
            self._pending.clear()
            self._size = 0
            self._after = after

    def discard(self) -> None:
        """Drop what is buffered (the answer it belongs to was just committed)."""
        with self._cond:
            self._pending.clear()
            self._size = 0

    def close(self) -> None:
        """Stop the writer thread; what is still buffered is dropped."""
        with self._cond:
            self._closed = True
            self._pending.clear()
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def _push(self, kind: str, text: str, call: int | None = None, name: str | None = None) -> None:
        with self._cond:
            if self._closed:
                return
            last = self._pending[-1] if self._pending else None
            if last and kind in ("text", "args") and (last.kind, last.call) == (kind, call):
                last.text += text
            else:
                self._pending.append(_Chunk(kind, text, self._after, call, name))
            if self._size == 0:
                self._first = time.monotonic()
            self._size += len(text) + 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="deltas", daemon=True)
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                batch = self._take()
                if batch is None:
                    return
            self._write(batch)

    def _take(self) -> list[_Chunk] | None:
        """Wait (holding the lock) until a batch is due; None once closed."""
        while not self._closed:
            if self._pending:
                # The first chunk after a quiet spell goes at once; what follows within
                # ``flush_seconds`` of a write waits for the next one, merged.
                now = time.monotonic()
                due = max(self._first, self._flushed + self.flush_seconds) - now
                if due <= 0 or self._size >= FLUSH_BYTES:
                    batch, self._pending, self._size = self._pending, [], 0
                    self._flushed = now
                    return batch
                self._cond.wait(due)
            else:
                self._cond.wait()
        return None

    def _write(self, batch: list[_Chunk]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for chunk in batch:
            pipe.xadd(self.key, chunk.fields(self.epoch), maxlen=self.maxlen, approximate=True)
        pipe.pexpire(self.key, self.ttl_ms)
        try:
            pipe.execute()
        except redis.RedisError as exc:
            log.debug("delta write dropped", extra={**self.fields, "error": str(exc)})
        self.writes += 1


@dataclass
class LiveReader:
    """A follower's reads of both streams: committed events gapless, deltas best effort."""

    redis: Any
    keys: Keys
    run_id: str
    delta_last: str = "0-0"
    _errors: int = field(default=0)

    def read(self, after: str, block_ms: int) -> tuple[list[Event], list[DeltaEvent]]:
        """Block up to ``block_ms`` for committed events after ``after`` or new deltas.

        Deltas that precede a committed event already seen (``after`` in this batch or
        before) are dropped: the committed event supersedes them.
        """
        events_key, deltas_key = self.keys.events(self.run_id), self.keys.deltas(self.run_id)
        reply = self.redis.xread(
            {events_key: after, deltas_key: self.delta_last}, block=block_ms, count=500
        )
        committed: list[Event] = []
        raw_deltas: list[tuple[str, dict[str, str]]] = []
        for key, entries in reply or []:
            if key == events_key:
                committed = [decode(self.run_id, eid, f) for eid, f in entries]
            else:
                raw_deltas = entries
        if raw_deltas:
            self.delta_last = raw_deltas[-1][0]
        newest = committed[-1].id if committed else after
        return committed, self._fresh(raw_deltas, newest)

    def _fresh(self, entries: list[tuple[str, dict[str, str]]], newest: str) -> list[DeltaEvent]:
        floor = stream_order(newest)
        fresh = []
        for eid, fields in entries:
            try:
                delta = decode_delta(self.run_id, eid, fields)
            except CorruptEvent:
                self._errors += 1  # a delta is never worth failing a follower for
                continue
            if stream_order(delta.after) >= floor:
                fresh.append(delta)
        return fresh
