"""Compaction, planned: what to trim and where to cut when the next model call would not fit.

Pure functions of the transcript (no I/O), so a resumed attempt plans the same
compaction, and sends the same summarising request, as the attempt it replaces. The
worker's side (asking the model, committing the ``compaction`` event) is
``workers/compactor.py``. In order:

1. Oversized old tool outputs (not the results of the latest answer) are trimmed to
   their head and tail, oldest first, until the call fits.
2. Else the older part is summarised by the model: the cut leaves about half of what
   the window has room for verbatim, and falls on an assistant (or user) message, so a
   tool call and its results are never separated. The part summarised is bounded by
   what one summarising call can be sent; a longer one takes several rounds.
3. Where nothing is left to summarise, the latest outputs are trimmed too; a view that
   still does not fit is :class:`ContextFull`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from runner import prompts
from runner.context import BYTES_PER_TOKEN, estimate, estimate_text, trim
from runner.errors import RunnerError
from runner.transcript import Transcript


class ContextFull(RunnerError):
    """The context window is too small for what the turn must send."""


@dataclass(frozen=True)
class Limits:
    """How a context window is shared out (all derived from its size)."""

    window: int
    budget: int  # what a request may take: the window less room for the answer
    summary_tokens: int  # how long a summary may be
    trim_over: int  # bytes: a tool output longer than this is oversized
    trim_keep: int  # bytes of an oversized output kept (head and tail)

    @classmethod
    def of(cls, window: int) -> Limits:
        reserve = min(window // 4, 4096)
        budget = window - reserve
        trim_over = max(1024, budget * BYTES_PER_TOKEN // 8)
        return cls(window, budget, max(128, min(2000, window // 16)), trim_over, trim_over // 2)


@dataclass(frozen=True)
class Plan:
    """One compaction: the messages to show trimmed, and where a summary ends (or None)."""

    trimmed: tuple[int, ...]
    cut: int | None
    tokens_before: int
    tokens_after: int  # estimated, the summary taken at its full allowed length


@dataclass(frozen=True)
class SummaryRequest:
    """A summarising call: what a model is sent, and what the summary will replace."""

    messages: list[dict[str, Any]]
    replaced: list[dict[str, Any]]  # messages[start:cut], as the view showed them
    start: int
    cut: int
    previous: str | None


def plan(
    transcript: Transcript, system: str, tools_tokens: int, limits: Limits, reported: bool = True
) -> Plan | None:
    """The compaction the next call needs, or None when the view fits the window.

    ``reported``: whether the provider's reported usage counts (else estimates only).
    Savings are judged by estimates either way.
    """
    view, messages = transcript.view, transcript.messages
    before = view.tokens(system, tools_tokens, reported)
    if before <= limits.budget:
        return None
    sizes = list(view.sizes)
    old = range(view.start, _last_answer(messages))
    trimmed = _trim(transcript, sizes, old, before - limits.budget, limits)
    after = before - sum(view.sizes[i] - sizes[i] for i in trimmed)
    if after <= limits.budget:
        return Plan(tuple(trimmed), None, before, after)
    fixed = view.fixed_tokens(system, tools_tokens) - _summary_size(transcript)
    fixed += estimate({"content": prompts.summary_text("")}) + limits.summary_tokens
    cut = _cut(transcript, sizes, (limits.budget - fixed) // 2, limits)
    if cut is not None:
        kept = tuple(i for i in trimmed if i >= cut)
        return Plan(kept, cut, before, fixed + sum(sizes[cut:]))
    # Nothing older is left to summarise: trim the latest outputs as well.
    every = range(view.start, len(messages))
    more = _trim(transcript, sizes, every, after - limits.budget, limits, skip=trimmed)
    after -= sum(view.sizes[i] - sizes[i] for i in more)
    if after > limits.budget:
        raise ContextFull(
            f"the context window ({limits.window:,} tokens) is too small for what this turn "
            f"must send (about {after:,} tokens with the older part summarised and long "
            "tool outputs trimmed); raise --context-tokens or RUNNER_CONTEXT_TOKENS if the "
            "model allows"
        )
    return Plan((*trimmed, *more), None, before, after)


def _summary_size(transcript: Transcript) -> int:
    message = transcript.view.summary_message()
    return estimate(message) if message is not None else 0


def _last_answer(messages: list[dict[str, Any]]) -> int:
    for i in range(len(messages) - 1, -1, -1):
        if messages[i]["role"] == "assistant":
            return i
    return len(messages)


def _trim(
    transcript: Transcript,
    sizes: list[int],
    where: range,
    needed: int,
    limits: Limits,
    skip: list[int] | None = None,
) -> list[int]:
    """Oversized tool outputs in ``where`` to trim, oldest first, until ``needed`` is saved.

    ``sizes`` is updated to the trimmed estimates.
    """
    chosen: list[int] = []
    saved = 0
    messages, shown = transcript.messages, transcript.view.shown
    for i in where:
        if saved >= needed:
            break
        message = messages[i]
        if message["role"] != "tool" or i in shown or (skip and i in skip):
            continue
        content = message["content"]
        if len(content.encode("utf-8", "surrogatepass")) <= limits.trim_over:
            continue
        size = estimate({**message, "content": trim(content, limits.trim_keep)})
        saved += sizes[i] - size
        sizes[i] = size
        chosen.append(i)
    return chosen


def _boundary(messages: list[dict[str, Any]], i: int) -> bool:
    """Whether the view may start at message ``i``: never between a call and its results."""
    return bool(messages[i]["role"] in ("assistant", "user"))


def _cut(transcript: Transcript, sizes: list[int], keep_tokens: int, limits: Limits) -> int | None:
    """Where the summary should end: the earliest boundary whose tail fits ``keep_tokens``.

    Failing that the latest boundary; never at the view's start (nothing to summarise).
    The part summarised is then shortened, if need be, to what one call can be sent.
    """
    messages, start = transcript.messages, transcript.view.start
    cut = None
    kept = 0
    for i in range(len(messages) - 1, start, -1):
        kept += sizes[i]
        if not _boundary(messages, i):
            continue
        if kept > keep_tokens and cut is not None:
            break
        cut = i
    if cut is None:
        return None
    room = limits.budget - _request_overhead(transcript, limits)
    used = 0
    for i in range(start, cut):
        used += estimate_text(_render(messages, i, transcript, limits)) + 2
        if used > room:
            shorter = [j for j in range(start + 1, i + 1) if _boundary(messages, j)]
            return shorter[-1] if shorter else cut
    return cut


def _request_overhead(transcript: Transcript, limits: Limits) -> int:
    previous = transcript.view.summary or ""
    text = prompts.SUMMARISER_SYSTEM + previous + prompts.summary_instruction(_words(limits))
    return estimate_text(text) + 64


def _words(limits: Limits) -> int:
    return limits.summary_tokens * 3 // 4


def _render(messages: list[dict[str, Any]], i: int, transcript: Transcript, limits: Limits) -> str:
    """Message ``i`` as a line of the conversation a summariser reads (long ones trimmed)."""
    message = transcript.view.shown.get(i, messages[i])
    role = message["role"]
    content = trim(str(message.get("content") or ""), limits.trim_keep * 2)
    if role == "tool":
        return f"[{i + 1}] TOOL RESULT ({message.get('name', '')}):\n{content}"
    lines = [f"[{i + 1}] {role.upper()}: {content}"] if content or role != "assistant" else []
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        args = trim(str(function.get("arguments", "")), limits.trim_keep)
        lines.append(f"[{i + 1}] ASSISTANT CALLS {function.get('name', '')} {args}")
    return "\n".join(lines)


def summary_request(transcript: Transcript, found: Plan, limits: Limits) -> SummaryRequest:
    """The summarising call for ``found`` (a plan with a cut)."""
    assert found.cut is not None
    view, messages = transcript.view, transcript.messages
    start, cut = view.start, found.cut
    conversation = "\n\n".join(_render(messages, i, transcript, limits) for i in range(start, cut))
    earlier = ""
    if view.summary is not None:
        earlier = f"Summary of what came before message {start + 1}:\n{view.summary}\n\n"
    text = (
        f"{earlier}The conversation, messages {start + 1} to {cut}:\n\n{conversation}\n\n"
        f"{prompts.summary_instruction(_words(limits))}"
    )
    sent = [
        {"role": "system", "content": prompts.SUMMARISER_SYSTEM},
        {"role": "user", "content": text},
    ]
    replaced = [view.shown.get(i, messages[i]) for i in range(start, cut)]
    return SummaryRequest(sent, replaced, start, cut, view.summary)


def describe(request: SummaryRequest) -> str:
    """A mechanical summary that names what it replaces (the scripted model's answer).

    Deterministic, and what a model's empty answer is replaced with.
    """
    steps = [m for m in request.replaced if m["role"] == "assistant"]
    calls: dict[str, int] = {}
    for message in steps:
        for call in message.get("tool_calls") or []:
            name = str((call.get("function") or {}).get("name", ""))
            calls[name] = calls.get(name, 0) + 1
    used = ", ".join(f"{name} x{count}" for name, count in sorted(calls.items())) or "none"
    users = [m for m in request.replaced if m["role"] == "user"]
    parts = [
        f"Summary of messages 1-{request.cut}. This compaction replaces messages "
        f"{request.start + 1}-{request.cut}: {len(request.replaced)} messages, "
        f"{len(steps)} model steps, tool calls: {used}."
    ]
    if request.previous is not None:
        parts.append(f"Before that: {_line(request.previous, 300)}")
    if users:
        parts.append(f"User said: {_line(str(users[0]['content']), 200)}")
    if steps:
        last = steps[-1]
        said = _line(str(last.get("content") or ""), 120)
        args = [c.get("function", {}).get("arguments", "") for c in last.get("tool_calls") or []]
        parts.append(f"Last step replaced: {said} {_line(json.dumps(args), 120)}".rstrip())
    return "\n".join(parts)


def _line(text: str, limit: int) -> str:
    one = " ".join(text.split())
    return one if len(one) <= limit else one[: limit - 3] + "..."
