"""The event model: what a run's stream holds and what ``follow --json`` prints.

A stream entry stores ``v`` (schema version), ``type``, ``epoch`` and ``data`` (the
type's own fields as JSON). ``id`` is the stream id and ``ts`` is read off it, so every
timestamp comes from the Redis server's clock.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from enum import StrEnum
from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from pydantic_core import PydanticSerializationError

from runner.errors import CorruptEvent

SCHEMA_VERSION = 1


class Status(StrEnum):
    """Where a run is in its life."""

    QUEUED = "queued"
    RUNNING = "running"
    WAITING = "waiting"
    SUSPENDED = "suspended"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL = frozenset({Status.SUCCEEDED, Status.FAILED, Status.CANCELLED})
PARKED = frozenset({Status.WAITING, Status.SUSPENDED})


class ToolCallOut(BaseModel):
    """One tool call an assistant message asks for."""

    model_config = ConfigDict(extra="forbid")
    id: str
    name: str
    arguments: dict[str, Any]


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid")
    v: int = SCHEMA_VERSION
    id: str = ""
    ts: str = ""
    epoch: int = 0


class StatusEvent(_Event):
    """The run changed status."""

    type: Literal["status"] = "status"
    status: Status
    worker: str | None = None
    reason: str | None = None
    trace: str | None = None  # the attempt's OpenTelemetry trace id, when tracing is on


class MessageEvent(_Event):
    """One message of the transcript (OpenAI chat shape)."""

    type: Literal["message"] = "message"
    role: Literal["system", "user", "assistant", "tool"]
    content: str
    tool_calls: list[ToolCallOut] | None = None
    tool_call_id: str | None = None
    name: str | None = None


class UsageEvent(_Event):
    """Tokens and cost of one model call, when the provider reports them."""

    type: Literal["usage"] = "usage"
    input_tokens: int
    output_tokens: int
    cost: float | None = None
    estimated: bool | None = None  # the provider reported none: counted by the shared estimate
    # Of input_tokens, what the provider's prompt cache served and stored (issue 12).
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None


class WorkspaceChange(BaseModel):
    """One manifest entry a step changed: a file, directory or symlink, or a deletion."""

    model_config = ConfigDict(extra="forbid")
    path: str
    kind: Literal["file", "dir", "link", "deleted"]
    mode: int | None = None  # permission bits (files and directories)
    hash: str | None = None  # sha256 of a file's contents, in the run's blob store
    size: int | None = None
    target: str | None = None  # a symlink's target, relative and inside the workspace


class WorkspaceEvent(_Event):
    """What a step changed in the run's workspace (issue 11); committed with the step.

    The run's stream folds to its workspace manifest, so history (diff, fork) can be
    rebuilt. ``note`` is set when the workspace stops (or starts again) being carried
    across hosts ("" clears it); ``skipped`` names what the scan could not keep.
    """

    type: Literal["workspace"] = "workspace"
    changes: list[WorkspaceChange]
    files: int = 0
    bytes: int = 0
    note: str | None = None
    skipped: list[str] | None = None


class CompactionEvent(_Event):
    """The turn outgrew the model's context window (issue 13): what its view now omits.

    Changes only what the model is sent, never the stream. ``summary`` (when set)
    replaces every message before the last ``keep`` ones that precede this event;
    ``trimmed`` names tool outputs shown cut to ``trim_bytes`` (head and tail), as
    positions counted back from this event (1 = the message just before it). Positions
    are relative so the fold means the same wherever the stream starts. ``replaced``,
    ``tokens_before``, ``tokens_after`` and ``window`` are for people reading it.
    """

    type: Literal["compaction"] = "compaction"
    summary: str | None = None
    keep: int = 0
    trimmed: list[int] | None = None
    trim_bytes: int = 0
    replaced: int = 0
    tokens_before: int = 0
    tokens_after: int = 0
    window: int = 0


class DeltaEvent(_Event):
    """What is in flight between commits: streamed text or tool-call arguments, a note.

    Ephemeral: it lives in the run's capped delta stream, never in the transcript, and
    the committed event that follows supersedes it. ``after`` is the id of the last
    committed event when it was written, so a follower that has seen a later committed
    event knows it is stale. ``kind``: ``text`` (the model's text), ``args`` (tool-call
    arguments of call ``call``, named ``name``), ``note`` (progress: a retry back-off, a
    tool still running), ``reset`` (the call restarted: drop what was streamed).
    """

    type: Literal["delta"] = "delta"
    ephemeral: Literal[True] = True
    kind: Literal["text", "args", "note", "reset"] = "text"
    text: str = ""
    after: str = "-"
    call: int | None = None
    name: str | None = None


# The one union of every event type, discriminated on ``type``. A new event type is one
# model above plus its name here (and one renderer in runner/cli/render.py).
Event = Annotated[
    StatusEvent | MessageEvent | UsageEvent | WorkspaceEvent | CompactionEvent,
    Field(discriminator="type"),
]
_adapter: TypeAdapter[Event] = TypeAdapter(Event)
_ENVELOPE = frozenset({"v", "id", "ts", "epoch", "type"})


def encode(event: Event) -> tuple[str, str]:
    """The ``(type, data)`` pair stored for an event; envelope fields are set by the store."""
    data = event.model_dump(mode="json", exclude=set(_ENVELOPE), exclude_none=True)
    return event.type, json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def ts_of(stream_id: str) -> str:
    """ISO 8601 UTC time of a stream id (its millisecond part is the server's clock)."""
    return _iso(int(stream_id.split("-", 1)[0]))


@lru_cache(maxsize=1024)
def _iso(ms: int) -> str:
    # Cached: the events of one step share their millisecond, and a replay decodes many.
    when = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def decode(run_id: str, stream_id: str, fields: dict[str, str]) -> Event:
    """Parse one stream entry; a malformed one raises CorruptEvent naming run and entry."""
    try:
        version = int(fields.get("v", "0"))
        if version > SCHEMA_VERSION:
            raise ValueError(f"schema version {version} is newer than {SCHEMA_VERSION}")
        data = json.loads(fields["data"])
        if not isinstance(data, dict):
            raise ValueError("data is not an object")
        data.update(
            v=version,
            id=stream_id,
            ts=ts_of(stream_id),
            epoch=int(fields["epoch"]),
            type=fields["type"],
        )
        return _adapter.validate_python(data)
    except (KeyError, ValueError, ValidationError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CorruptEvent(f"run {run_id}: event {stream_id} is malformed: {detail}") from exc


_delta_adapter: TypeAdapter[DeltaEvent] = TypeAdapter(DeltaEvent)


def decode_delta(run_id: str, stream_id: str, fields: dict[str, str]) -> DeltaEvent:
    """Parse one delta stream entry; CorruptEvent if it is malformed (callers skip it)."""
    try:
        data = json.loads(fields["data"])
        if not isinstance(data, dict):
            raise ValueError("data is not an object")
        data.update(id=stream_id, ts=ts_of(stream_id), epoch=int(fields["epoch"]))
        return _delta_adapter.validate_python(data)
    except (KeyError, ValueError, ValidationError) as exc:
        raise CorruptEvent(f"run {run_id}: delta {stream_id} is malformed") from exc


def to_json(event: Event | DeltaEvent) -> str:
    """One line of ``follow --json``: compact, UTF-8, no null fields.

    pydantic writes the same bytes as ``json.dumps`` of the dump, three times faster
    (10,000 events of a replay, issue 12), except for floats (``1e-06`` against
    ``0.000001``) and lone surrogates: events with either take the ``json.dumps`` path.
    tests/unit/test_to_json.py holds the two side by side.
    """
    if not _has_float(event):
        try:
            return event.model_dump_json(exclude_none=True)
        except PydanticSerializationError:
            pass  # a lone surrogate, which json.dumps writes as it is
    return _dumps(event)


def _dumps(event: Event | DeltaEvent) -> str:
    return json.dumps(
        event.model_dump(mode="json", exclude_none=True), separators=(",", ":"), ensure_ascii=False
    )


def _has_float(event: Event | DeltaEvent) -> bool:
    if isinstance(event, UsageEvent):
        return event.cost is not None
    if isinstance(event, MessageEvent) and event.tool_calls:
        return any(_holds_float(call.arguments) for call in event.tool_calls)
    return False  # the other types have no float fields


def _holds_float(value: Any) -> bool:
    if isinstance(value, float):
        return True
    if isinstance(value, dict):
        return any(_holds_float(v) for v in value.values())
    if isinstance(value, list):
        return any(_holds_float(v) for v in value)
    return False


def to_openai(event: MessageEvent) -> dict[str, Any]:
    """The OpenAI chat message for a message event."""
    msg: dict[str, Any] = {"role": event.role, "content": event.content}
    if event.tool_calls:
        msg["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
            }
            for call in event.tool_calls
        ]
    if event.tool_call_id is not None:
        msg["tool_call_id"] = event.tool_call_id
    if event.name is not None and event.role == "tool":
        msg["name"] = event.name
    return msg
