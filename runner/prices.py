"""Prices of model calls: a built-in table the user extends with ``RUNNER_PRICES``.

Prices are US dollars per million tokens, input and output, the way providers publish
them. ``RUNNER_PRICES`` names a JSON or TOML file (by its suffix) of the same shape,
``{"MODEL": {"input": 2.5, "output": 10}}``, merged over the built-ins. A model spec
(``openai:gpt-4o-2024-08-06``) is priced by its full spec, then its model name, then the
longest table entry its name starts with (``gpt-4o``), so dated variants need no entry.
The built-ins are list prices as of late 2025; a provider that reports a cost wins.
"""

from __future__ import annotations

import json
import math
import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Any

PER = 1_000_000
Price = tuple[float, float]  # USD per million tokens: input, output

BUILTIN: dict[str, Price] = {
    "gpt-4o": (2.5, 10.0),
    "gpt-4o-mini": (0.15, 0.6),
    "gpt-4.1": (2.0, 8.0),
    "gpt-4.1-mini": (0.4, 1.6),
    "gpt-4.1-nano": (0.1, 0.4),
    "gpt-5": (1.25, 10.0),
    "gpt-5-mini": (0.25, 2.0),
    "gpt-5-nano": (0.05, 0.4),
    "o3": (2.0, 8.0),
    "o4-mini": (1.1, 4.4),
    "claude-opus-4": (15.0, 75.0),
    "claude-sonnet-4": (3.0, 15.0),
    "claude-3-5-haiku": (0.8, 4.0),
    "claude-haiku-4-5": (1.0, 5.0),
}


def parse(text: str, toml: bool) -> dict[str, Price]:
    """A price table from a file's text; ValueError saying what is wrong."""
    try:
        data: Any = tomllib.loads(text) if toml else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not {'TOML' if toml else 'JSON'}: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError('expected an object of models: {"MODEL": {"input": N, "output": N}}')
    table: dict[str, Price] = {}
    for model, entry in data.items():
        if not isinstance(entry, dict) or set(entry) != {"input", "output"}:
            raise ValueError(f"{str(model)[:40]!r}: give exactly input and output (USD per 1M)")
        values = []
        for side in ("input", "output"):
            value = entry[side]
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            if not ok or not math.isfinite(value) or value < 0:
                raise ValueError(f"{str(model)[:40]!r}: {side} must be a number from 0")
            values.append(float(value))
        table[str(model)] = (values[0], values[1])
    return table


def load(path: Path | None) -> dict[str, Price]:
    """The built-ins merged with the file at ``path``; ValueError if it is unreadable."""
    return dict(_load(str(path)) if path is not None else BUILTIN)


@lru_cache(maxsize=8)
def _load(path: str) -> dict[str, Price]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    return {**BUILTIN, **parse(text, path.endswith(".toml"))}


def price_of(table: dict[str, Price], spec: str) -> Price | None:
    """The price of model ``spec`` in ``table``, or None if it has none."""
    name = spec.split(":", 1)[-1]
    for key in (spec, name):
        if key in table:
            return table[key]
    prefixes = [k for k in table if name.startswith(k + "-")]
    return table[max(prefixes, key=len)] if prefixes else None


def cost(table: dict[str, Price], spec: str, tokens_in: int, tokens_out: int) -> float | None:
    """USD for one call, or None when the model has no price."""
    price = price_of(table, spec)
    if price is None:
        return None
    return (tokens_in * price[0] + tokens_out * price[1]) / PER
