"""Model specs (``--model``): which providers exist, checked where a run is submitted."""

from __future__ import annotations

import re

from runner.errors import BadInput

KNOWN_SPECS = ("scripted", "openai:<model>")
_OPENAI_MODEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")


def check_model_spec(spec: str) -> tuple[str, str]:
    """``(provider, model)`` for a well-formed spec; BadInput naming the known ones otherwise."""
    if spec == "scripted":
        return "scripted", ""
    provider, _, name = spec.partition(":")
    if provider == "openai" and _OPENAI_MODEL.fullmatch(name):
        return provider, name
    raise BadInput(f"unknown model {spec[:60]!r}; known: {', '.join(KNOWN_SPECS)}")
