"""Budgets: the limits a run parks at, the checks of what users give, and what a run has spent.

A limit of 0 means none. Limits live in the run's record (set at submit, raised by
``runner resume --add-...``); what was spent is folded from the run's own stream (usage
events, tool results, the times of its status events), so it is a function of the
committed events and a resumed attempt counts exactly what the last one did.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from runner.errors import BadInput
from runner.events import Event, MessageEvent, Status, StatusEvent, UsageEvent

if TYPE_CHECKING:
    from runner.client import Submission
    from runner.settings import Settings

MAX_SECONDS = 366 * 86400.0  # a year: any longer is a typo
MAX_COST = 1_000_000.0
MAX_COUNT = 10**12
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd]?)")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
TOOL_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,128}")


class BudgetFields(BaseModel):
    """The run record's fields for budgets and approvals (a base of ``RunRecord``)."""

    max_tokens: int = 0
    max_cost: float = 0.0
    max_time: float = 0.0  # seconds of running time
    max_tool_calls: int = 0
    approve: str = ""  # the run's own tools that need approval, comma-separated
    tokens_in: int = 0  # totals of the usage events, kept by the store's scripts
    tokens_out: int = 0
    cost: float = 0.0
    waiting_for: str = ""  # while waiting: "approval", or the limit reached
    gate_call: str = ""  # while waiting for approval: the tool call and its tool
    gate_tool: str = ""
    approved: str = ""  # the tool call approved last (it runs without asking again)


def parse_duration(text: str, what: str = "duration") -> float:
    """Seconds in ``90s``, ``30m``, ``2h``, ``1d`` or a plain number of seconds."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise BadInput(f"{what} must be a duration such as 90s, 30m or 2h, not {text[:40]!r}")
    seconds = float(match[1]) * _UNIT[match[2]]
    if seconds > MAX_SECONDS:
        raise BadInput(f"{what} is over a year: {text[:40]!r}")
    return seconds


def check_cost(value: float, what: str = "cost") -> float:
    """``value`` if it is a finite, non-negative amount of US dollars."""
    if not math.isfinite(value) or not 0 <= value <= MAX_COST:
        raise BadInput(f"{what} must be 0 to {MAX_COST:g} USD, not {value}")
    return value


def check_count(value: int, what: str) -> int:
    """``value`` if it is a whole number from 0 up."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
        raise BadInput(f"{what} must be a whole number from 0, not {value!r}")
    return value


def check_tools(names: Iterable[str]) -> tuple[str, ...]:
    """Tool names as given to ``--approve`` (not checked against any worker's registry)."""
    out = []
    for name in names:
        if not isinstance(name, str) or not TOOL_NAME.fullmatch(name):
            raise BadInput(f"not a tool name: {str(name)[:40]!r} (letters, digits, _ . : -)")
        out.append(name)
    return tuple(dict.fromkeys(out))


@dataclass(frozen=True)
class Adds:
    """What ``runner resume`` adds to a run's limits (a limit of 0, none, stays none)."""

    steps: int = 0
    tokens: int = 0
    cost: float = 0.0
    time: float = 0.0
    tool_calls: int = 0

    def checked(self) -> Adds:
        for name in ("steps", "tokens", "tool_calls"):
            check_count(getattr(self, name), f"--add-{name.replace('_', '-')}")
        check_cost(self.cost, "--add-cost")
        if not math.isfinite(self.time) or not 0 <= self.time <= MAX_SECONDS:
            raise BadInput(f"--add-time must be 0 to a year, not {self.time}")
        return self

    def args(self) -> list[str]:
        """The script's ARGV for these adds, in field order."""
        return [repr(getattr(self, f.name)) for f in fields(self)]

    def as_json(self) -> dict[str, float]:
        return {f"add_{f.name}": getattr(self, f.name) for f in fields(self)}


def adds_from_json(body: dict[str, object]) -> Adds:
    """Adds from an HTTP body ``{"add_tokens": N, "add_time": "30m" | seconds, ...}``."""
    known = {f"add_{f.name}" for f in fields(Adds)}
    unknown = sorted(set(body) - known)
    if unknown:
        raise BadInput(f"unknown field: {unknown[0][:40]!r}")
    values: dict[str, float] = {}
    for key, raw in body.items():
        name = key.removeprefix("add_")
        if name == "time" and isinstance(raw, str):
            values[name] = parse_duration(raw, key)
        elif isinstance(raw, bool) or not isinstance(raw, int | float):
            raise BadInput(f"{key} must be a number")
        elif name in ("cost", "time"):
            values[name] = float(raw)
        elif isinstance(raw, float) and not raw.is_integer():
            raise BadInput(f"{key} must be a whole number")
        else:
            values[name] = int(raw)
    return Adds(**values).checked()  # type: ignore[arg-type]


@dataclass(frozen=True)
class Limits:
    """A run's limits (0: none) as its record holds them."""

    steps: int
    tokens: int = 0
    cost: float = 0.0
    time: float = 0.0
    tool_calls: int = 0

    @classmethod
    def of(cls, record: BudgetFields, steps: int) -> Limits:
        r = record
        return cls(steps, r.max_tokens, r.max_cost, r.max_time, r.max_tool_calls)


@dataclass
class Spent:
    """What a run has spent, folded from its own stream."""

    tokens: int = 0
    cost: float = 0.0
    tool_calls: int = 0
    running_ms: int = 0  # running time of the attempts that have ended
    running_since: int | None = None  # when the attempt still open started (ms)

    @classmethod
    def fold(cls, events: Iterable[Event]) -> Spent:
        spent = cls()
        spent.add(events)
        return spent

    def add(self, events: Iterable[Event]) -> None:
        for event in events:
            if isinstance(event, UsageEvent):
                self.tokens += event.input_tokens + event.output_tokens
                self.cost += event.cost or 0.0
            elif isinstance(event, MessageEvent) and event.role == "tool":
                self.tool_calls += 1
            elif isinstance(event, StatusEvent) and event.id:
                self._status(event.status, int(event.id.split("-", 1)[0]))

    def _status(self, status: Status, ms: int) -> None:
        if status is Status.RUNNING:
            if self.running_since is None:
                self.running_since = ms
        elif self.running_since is not None:
            self.running_ms += max(0, ms - self.running_since)
            self.running_since = None


def reached(
    limits: Limits, spent: Spent, seconds: float, run_id: str = "ID"
) -> tuple[str, str] | None:
    """The first limit reached as ``(name, reason)``, given ``seconds`` of running time."""
    checks = (
        ("tokens", limits.tokens, spent.tokens, f"{spent.tokens} tokens", "N"),
        ("cost", limits.cost, spent.cost, f"${spent.cost:.4f}", "USD"),
        ("time", limits.time, seconds, f"{seconds:.0f} s of running time", "DURATION"),
        ("tool_calls", limits.tool_calls, spent.tool_calls, f"{spent.tool_calls} tool calls", "N"),
    )
    for name, limit, used, shown, metavar in checks:
        if limit and used >= limit:
            flag = "--add-" + name.replace("_", "-")
            return name, f"{name.replace('_', ' ')} budget reached ({shown} of {limit:g}); " + (
                f"raise it with: runner resume {run_id} {flag} {metavar}"
            )
    return None


def record_fields(sub: Submission, defaults: Settings) -> dict[str, str]:
    """The record fields of a submission's limits (``None``: the RUNNER_MAX_... default)."""

    def pick(name: str) -> Any:
        value = getattr(sub, name)
        return getattr(defaults, name) if value is None else value

    tokens = check_count(pick("max_tokens"), "max tokens")
    tool_calls = check_count(pick("max_tool_calls"), "max tool calls")
    cost = check_cost(float(pick("max_cost")), "max cost")
    seconds = float(pick("max_time"))
    if not math.isfinite(seconds) or not 0 <= seconds <= MAX_SECONDS:
        raise BadInput(f"max time must be 0 to a year, not {seconds}")
    return {
        "max_tokens": str(tokens),
        "max_cost": repr(cost),
        "max_time": repr(seconds),
        "max_tool_calls": str(tool_calls),
        "approve": ",".join(check_tools(sub.approve)),
    }


LIMITS = ("max_tokens", "max_cost", "max_time", "max_tool_calls")


def limits_from_json(body: dict[str, Any]) -> dict[str, Any]:
    """A submission's limits from an HTTP body (``max_time``: seconds or ``"30m"``)."""
    out: dict[str, Any] = {}
    for name in LIMITS:
        raw = body.get(name)
        if raw is None:
            continue
        if name == "max_time" and isinstance(raw, str):
            raw = parse_duration(raw, name)
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise BadInput(f"{name} must be a number")
        if name in ("max_tokens", "max_tool_calls") and not float(raw).is_integer():
            raise BadInput(f"{name} must be a whole number")
        out[name] = int(raw) if name in ("max_tokens", "max_tool_calls") else float(raw)
    return out
