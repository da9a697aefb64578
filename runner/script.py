"""The scripted model's script: its schema, checked at submit time and again by workers."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from runner.errors import BadInput


class ScriptStep(BaseModel):
    """One answer of the scripted model."""

    model_config = ConfigDict(extra="forbid")

    content: str = ""
    tool: str | None = None
    args: dict[str, Any] = Field(default_factory=dict)
    sleep: float = Field(0, ge=0, le=3600)
    crash: bool = False


class Script(BaseModel):
    """The scripted model's answers, in order."""

    model_config = ConfigDict(extra="forbid")

    steps: list[ScriptStep]


def _error_location(loc: tuple[int | str, ...]) -> str:
    """``("steps", 1, "sleep")`` as ``steps[1].sleep``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else str(part)
    return out


def parse_script(text: str) -> Script:
    """Parse a script file's JSON; BadInput with a one-line message if it is not valid."""
    try:
        return Script.model_validate_json(text)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        first = errors[0]
        where = _error_location(tuple(first["loc"]))
        message = " ".join(str(first["msg"]).split())
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        prefix = f"{where}: " if where else ""
        raise BadInput(f"bad script: {prefix}{message}{more}") from None
