"""User tools for the tests, loaded by workers through ``RUNNER_TOOLS=tests.user_tools:TOOLS``.

``extra_tool`` is what a test's entry point (group ``runner.tools``) names.
"""

from __future__ import annotations

from workers.tools import ToolContext, tool


@tool
def effect(label: str, ctx: ToolContext) -> str:
    """Echo a label with the call's effect id."""
    return f"{label} effect={ctx.effect_id}"


@tool
def boom(why: str) -> str:
    """A tool with a bug."""
    raise ZeroDivisionError(f"boom: {why}")


@tool
def blob(size: int) -> bytes:
    """Return ``size`` bytes that are not text."""
    return bytes([0, 0xFF, 0xFE, 0x80]) * (size // 4)


@tool
def big(size: int) -> str:
    """Return ``size`` characters of text with a recognisable head and tail."""
    return "HEAD" + "m" * size + "TAIL"


TOOLS = [effect, boom, blob, big]


@tool(idempotent=True)
def extra_tool(name: str) -> str:
    """Say hello (from an entry point)."""
    return f"hello {name} from an entry point"
