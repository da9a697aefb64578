"""``to_json`` (a line of ``follow --json``) writes what ``json.dumps`` of the dump does.

The fast path is pydantic's own serializer; these cases are where the two could differ:
floats, escapes, non-ASCII, lone surrogates, nested arguments, every event type.
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from runner.events import (
    CompactionEvent,
    DeltaEvent,
    Event,
    MessageEvent,
    Status,
    StatusEvent,
    ToolCallOut,
    UsageEvent,
    WorkspaceChange,
    WorkspaceEvent,
    to_json,
)

TEXTS = [
    "plain",
    "",
    "\x1b[31mred\x1b[0m \x07 \x00 \x1f \x7f",
    'quote " backslash \\ slash /',
    "\n\r\t\b\f",
    "\u2028\u2029 \ufeff é ü 中文 😀",
    "lone \ud800 surrogate \udfff",
]
FLOATS = [0.0, -0.0, 1.0, 0.1, 3e-06, 1e-05, 1e-07, 1e16, 123456789.123, 2.5e-300, float("inf")]


def _events() -> list[Event | DeltaEvent]:
    stamp: dict[str, Any] = {"id": "1700000000000-3", "ts": "2023-11-14T22:13:20.000Z", "epoch": 2}
    events: list[Event | DeltaEvent] = []
    for text in TEXTS:
        events += [
            MessageEvent(role="user", content=text, **stamp),
            MessageEvent(role="tool", content=text, name=text, tool_call_id="c1", **stamp),
            StatusEvent(status=Status.FAILED, worker=text, reason=text, **stamp),
            DeltaEvent(kind="args", text=text, call=0, name=text, after="1-0", **stamp),
            CompactionEvent(summary=text, trimmed=[1, 2], keep=3, **stamp),
            WorkspaceEvent(
                changes=[WorkspaceChange(path=text or "p", kind="file", mode=0o644, size=3)],
                note=text,
                skipped=[text],
                **stamp,
            ),
        ]
    rng = random.Random(12)
    for value in [*FLOATS, *(rng.uniform(-1, 1) * 10 ** rng.randint(-20, 20) for _ in range(200))]:
        args = {"n": None, "x": value, "deep": [{"y": [value, 1, True]}], "s": "1e-06"}
        call = ToolCallOut(id="c", name="calc", arguments=args)
        events += [
            UsageEvent(input_tokens=10, output_tokens=2, cost=value, **stamp),
            MessageEvent(role="assistant", content="", tool_calls=[call], **stamp),
        ]
    big = {"i": 10**30, "b": False, "none": None, "list": [], "obj": {}, "t": TEXTS[2]}
    events += [
        MessageEvent(
            role="assistant", content="x", tool_calls=[ToolCallOut(id="c", name="f", arguments=big)]
        ),
        UsageEvent(input_tokens=1, output_tokens=1, cache_read_tokens=5, estimated=True),
    ]
    return events


def _reference(event: Event | DeltaEvent) -> str:
    return json.dumps(
        event.model_dump(mode="json", exclude_none=True), separators=(",", ":"), ensure_ascii=False
    )


@pytest.mark.parametrize("event", _events(), ids=lambda e: e.type)
def test_to_json_is_json_dumps_of_the_dump(event: Event | DeltaEvent) -> None:
    assert to_json(event) == _reference(event)
