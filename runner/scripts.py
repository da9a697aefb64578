"""The Lua scripts of ``runner/lua``, and the line that gives their KEYS names.

Every script is read from the package here and registered by its caller (``RunStore``,
the fairness slots, the sweeper). A script names its keys through one table made from
a Python list, so the Python side and the Lua side cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib import resources


def source(name: str) -> str:
    """The text of ``runner/lua/NAME.lua``."""
    return (resources.files("runner") / "lua" / f"{name}.lua").read_text()


def keys_table(var: str, names: Iterable[str]) -> str:
    """``local VAR = {a = KEYS[1], b = KEYS[2], ...}``: the KEYS a script is called with."""
    slots = ", ".join(f"{name} = KEYS[{i}]" for i, name in enumerate(names, 1))
    return f"local {var} = {{{slots}}}"
