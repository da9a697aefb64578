"""Figures: samples reduced to a median and a spread, set beside a floor."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Stat = Literal["p50", "p99"]


@dataclass(frozen=True)
class Spread:
    """The median of some samples and the percentiles around it."""

    median: float
    p10: float
    p90: float
    p99: float
    n: int

    @classmethod
    def of(cls, samples: Sequence[float]) -> Spread:
        """Reduce ``samples`` (at least one) to their median and percentiles."""
        xs = sorted(samples)
        if not xs:
            raise ValueError("no samples")
        return cls(statistics.median(xs), _pct(xs, 10), _pct(xs, 90), _pct(xs, 99), len(xs))

    def get(self, stat: Stat) -> float:
        """The median for ``p50``, else the 99th percentile."""
        return self.median if stat == "p50" else self.p99

    def as_dict(self) -> dict[str, float | int]:
        return {
            "median": self.median,
            "p10": self.p10,
            "p90": self.p90,
            "p99": self.p99,
            "n": self.n,
        }


def _pct(xs: Sequence[float], pct: float) -> float:
    """Linear-interpolated percentile of sorted ``xs``."""
    pos = (len(xs) - 1) * pct / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


@dataclass(frozen=True)
class Figure:
    """One measured figure beside its floor; ``ratio`` is figure / floor at ``stat``."""

    name: str
    unit: str  # "s", "B" or "1/s"
    value: Spread
    floor_name: str
    floor: Spread
    stat: Stat = "p50"
    goal: str = ""
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        base = self.floor.get(self.stat)
        return self.value.get(self.stat) / base if base else math.inf

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "unit": self.unit,
            "stat": self.stat,
            "value": self.value.get(self.stat),
            **self.value.as_dict(),
            "floor": {
                "name": self.floor_name,
                "value": self.floor.get(self.stat),
                **self.floor.as_dict(),
            },
            "ratio": self.ratio,
            "goal": self.goal,
            "note": self.note,
            **self.extra,
        }
