"""The ``runner`` command line: a front end over :class:`runner.client.Client`.

- ``group``: the click group, the consoles, one-line errors, the entry point
- ``runs``: submit, follow, status, list, transcript
- ``steer``: cancel, send
- ``parking``: resume, approve, deny (runs parked as waiting or suspended)
- ``workspace``: diff, pull
- ``sessions``: sessions, session rename|delete, fork, purge
- ``ops``: worker, sweep, dev, demo, bench
- ``serve``: serve (the HTTP API), token create|revoke
- ``admin``: doctor, server status|stop
- ``render``: human views of events and runs (``text``: its plain-string parts, ``plain``:
  the piped view); ``following``: following a run

Commands fetch through the client and print through ``render``; none of them touches
Redis or RQ itself. A command's module is imported when the command runs
(``group.COMMANDS``), so ``runner follow`` loads neither RQ nor the other commands;
``load_all()`` registers every command on ``cli``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from runner.cli.group import MODULES, cli, guarded, load_all, main

__all__ = ["cli", "guarded", "load_all", "main"]


def __getattr__(name: str) -> ModuleType:
    # ``runner.cli.runs`` and the other command modules, imported when first named.
    if name in MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
