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
import importlib.abc
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType


class _NoRedisMetrics(importlib.abc.MetaPathFinder):
    """Refuses ``opentelemetry.sdk.metrics`` while redis-py is imported.

    redis-py 8 imports the OpenTelemetry metrics SDK whenever it is installed (about
    40 ms, issue 12), for metrics of its own that runner never turns on; told it is
    missing, redis-py goes without. Only the CLI's process, only during that import:
    tracing (runner/tracing.py) imports the trace SDK and is untouched.
    """

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname == "opentelemetry.sdk.metrics":
            raise ImportError("not while redis-py is imported (runner.cli)", name=fullname)
        return None


def _import_redis() -> None:
    if "redis" in sys.modules or "opentelemetry.sdk.metrics" in sys.modules:
        return
    finder = _NoRedisMetrics()
    sys.meta_path.insert(0, finder)
    try:
        import redis  # noqa: F401
    finally:
        sys.meta_path.remove(finder)


_import_redis()

from runner.cli.group import MODULES, cli, guarded, load_all, main  # noqa: E402

__all__ = ["cli", "guarded", "load_all", "main"]


def __getattr__(name: str) -> ModuleType:
    # ``runner.cli.runs`` and the other command modules, imported when first named.
    if name in MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
