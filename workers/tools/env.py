"""The clean environment tools run with (DESIGN guarantee 9).

A tool never inherits the worker's environment: that holds the Redis URL (with its
password, which would let a turn rewrite any run past the fencing) and the provider
keys, and a step running ``env`` would commit them to the run's stream for every
follower to read. Tools get an allowlist, plus the names ``RUNNER_TOOL_ENV`` lists;
``RUNNER_*`` and every variable a provider reads are dropped even when listed.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import sys
from collections.abc import Iterable, Mapping

from runner.providers import provider_vars

log = logging.getLogger("runner.tools")

# Locale, terminal, time zone, temp dir and who we are: what ordinary commands expect.
ALLOWED = (
    "PATH",
    "LANG",
    "LANGUAGE",
    "LC_ALL",
    "LC_CTYPE",
    "TERM",
    "TMPDIR",
    "TZ",
    "USER",
    "LOGNAME",
)
_warned: set[str] = set()
PR_SET_DUMPABLE = 4


def forbidden(name: str) -> bool:
    """Whether ``name`` may never reach a tool, whatever ``RUNNER_TOOL_ENV`` says."""
    return name.upper().startswith("RUNNER_") or name.upper() in provider_vars()


def tool_env(source: Mapping[str, str], extra: Iterable[str] = ()) -> dict[str, str]:
    """The variables of ``source`` a tool gets: the allowlist plus ``extra``, minus forbidden."""
    env = {name: source[name] for name in ALLOWED if name in source}
    env.setdefault("PATH", os.defpath)
    for name in extra:
        if forbidden(name):
            if name not in _warned:
                _warned.add(name)
                log.warning("RUNNER_TOOL_ENV names %s: never given to tools", name)
            continue
        if name in source:
            env[name] = source[name]
    return env


def default_tool_env() -> dict[str, str]:
    """The tool environment for this process: its variables and its settings."""
    from runner.settings import get_settings

    return tool_env(os.environ, get_settings().tool_env)


def hide_environment() -> None:
    """Make this process's ``/proc/PID/environ`` (and memory) unreadable to its own user.

    A tool runs as the worker's user: without this, ``cat /proc/$PPID/environ`` from a
    shell step would read the worker's variables, clean tool environment or not. Linux
    only; root can still read them (so workers do not run as root: the image does not).
    Inherited by forked children (the work horse), reset by exec (the tool itself).
    """
    if sys.platform != "linux":
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
