"""The transcript checker of the chaos tests and the soak: is a finished run exactly right?

:func:`transcript_problems` checks a run's events against its script: every scripted
step exactly once and in order, each tool call answered once, epochs that only grow,
and the run succeeded.
"""

from __future__ import annotations

from typing import Any

from runner.events import Event, MessageEvent, Status, StatusEvent
from runner.store import RunRecord

INTERRUPTED = "interrupted"  # what a tool result says when its call was cut short


def expected_tool_output(step: dict[str, Any]) -> str | None:
    """What the shell tool answers for a ``step_script`` step (``echo out-i``), if known."""
    command = step.get("args", {}).get("command", "")
    if step.get("tool") == "shell" and command.startswith("echo "):
        return f"{command[5:]}\nexit code 0"
    return None


def transcript_problems(
    events: list[Event],
    steps: list[dict[str, Any]],
    prompt: str,
    *,
    exact: bool = True,
    record: RunRecord | None = None,
) -> list[str]:
    """Everything wrong with a finished run's events; empty when the run is right.

    ``exact``: every tool result is the tool's real output. Otherwise a tool result may
    instead say the call was interrupted (a kill or handoff mid-tool; guarantee 5).
    """
    problems = _epoch_problems(events)
    messages = [e for e in events if isinstance(e, MessageEvent)]
    want: list[tuple[str, str | None, str | None]] = [("user", prompt, None)]
    for i, step in enumerate(steps):
        want.append(("assistant", step["content"], step.get("tool")))
        if step.get("tool"):
            want.append(("tool", expected_tool_output(step), f"call_{i}"))
    if len(messages) != len(want):
        problems.append(f"{len(messages)} messages, want {len(want)}: {_roles(messages)}")
    for i, (msg, (role, content, extra)) in enumerate(zip(messages, want, strict=False)):
        found = _message_problems(msg, role, content, extra)
        if msg.role == "tool" and not _tool_output_ok(msg.content, content, exact):
            found.append(f"tool said {msg.content!r}, want {content!r}")
        problems.extend(f"message {i}: {p}" for p in found)
    statuses = [e for e in events if isinstance(e, StatusEvent)]
    if not statuses or statuses[-1].status is not Status.SUCCEEDED:
        problems.append(f"last status is {statuses[-1].status if statuses else None}")
    if record is not None:
        problems.extend(_record_problems(record, messages))
    return problems


def _message_problems(
    msg: MessageEvent, role: str, content: str | None, extra: str | None
) -> list[str]:
    if msg.role != role:
        return [f"role {msg.role}, want {role}"]
    if role == "assistant":
        out = [] if msg.content == content else [f"content {msg.content!r}, want {content!r}"]
        calls = [c.name for c in msg.tool_calls or []]
        if calls != ([extra] if extra else []):
            out.append(f"tool calls {calls}, want {extra}")
        return out
    if role == "tool" and msg.tool_call_id != extra:
        return [f"answers {msg.tool_call_id}, want {extra}"]
    if role == "user" and msg.content != content:
        return [f"prompt {msg.content!r}"]
    return []


def _tool_output_ok(said: str, want: str | None, exact: bool) -> bool:
    """The tool's real output, or (unless ``exact``) a note that the call was cut short."""
    return want is None or said == want or (not exact and INTERRUPTED in said)


def _epoch_problems(events: list[Event]) -> list[str]:
    """Epochs never go back, and each attempt starts (``running``) once."""
    problems = []
    last = 0
    for event in events:
        if event.epoch < last:
            problems.append(f"event {event.id} has epoch {event.epoch} after epoch {last}")
        last = max(last, event.epoch)
    running = [e.epoch for e in running_events(events)]
    if running != sorted(set(running)):
        problems.append(f"running epochs {running} are not strictly increasing")
    return problems


def _record_problems(record: RunRecord, messages: list[MessageEvent]) -> list[str]:
    problems = []
    if record.status is not Status.SUCCEEDED:
        problems.append(f"record status {record.status} ({record.reason})")
    committed = sum(1 for m in messages if m.role in ("assistant", "tool"))
    if record.steps != committed:
        problems.append(f"record counts {record.steps} steps, the stream {committed}")
    return problems


def _roles(messages: list[MessageEvent]) -> str:
    return " ".join(m.role[0] for m in messages)


def running_events(events: list[Event]) -> list[StatusEvent]:
    """The ``running`` status events: one per attempt."""
    return [e for e in events if isinstance(e, StatusEvent) and e.status is Status.RUNNING]


def stream_seconds(event: Event) -> float:
    """When the server appended ``event`` (its stream id), as a Unix time."""
    return int(event.id.split("-", 1)[0]) / 1000


def recovery_seconds(events: list[Event], after_epoch: int, since: float) -> float | None:
    """Seconds from ``since`` (a ``time.time()``) to the first attempt after ``after_epoch``."""
    for event in running_events(events):
        if event.epoch > after_epoch:
            return stream_seconds(event) - since
    return None
