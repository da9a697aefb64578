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
- ``render``: human views of events and runs; ``following``: following a run

Commands fetch through the client and print through ``render``; none of them touches
Redis or RQ itself. Importing this package registers every command on ``cli``.
"""

from __future__ import annotations

from runner.cli import admin, ops, parking, runs, serve, sessions, steer, workspace
from runner.cli.group import cli, guarded, main

__all__ = [
    "admin",
    "cli",
    "guarded",
    "main",
    "ops",
    "parking",
    "runs",
    "serve",
    "sessions",
    "steer",
    "workspace",
]
