"""The worker's own health: a small file it rewrites on every pass of its loop (issue 17).

``runner worker --health`` (the image's HEALTHCHECK, a Kubernetes liveness probe) reads
it: healthy means the file names a live process and was written within ``--max-age``
seconds. The worker writes it from the places it passes through at least every few
seconds: each dequeue slice, each second a turn runs (RQ's monitoring loop), and each
back-off nap while the server is unreachable. So a stuck worker (deadlocked, wedged in a
call that never returns) goes unhealthy, while a worker riding out a Redis outage stays
healthy: restarting it would not bring the server back, only a process storm. The check
needs no Redis and no credentials.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from runner.pids import pid_exists

DEFAULT_MAX_AGE = 30.0  # seconds; the loop writes at least every MAX_BACKOFF (10 s)
MIN_INTERVAL = 0.5  # seconds between writes, however often the loop passes


class Beacon:
    """Writes the health file for one worker; does nothing when no path is configured."""

    def __init__(self, path: Path | None, name: str):
        self.path = path
        self.name = name
        self._last = 0.0

    def touch(self, state: str) -> None:
        """Record that the worker's loop is alive, in ``state`` (idle, busy, outage)."""
        now = time.monotonic()
        if self.path is None or now - self._last < MIN_INTERVAL:
            return
        self._last = now
        body = json.dumps({"pid": os.getpid(), "name": self.name, "state": state})
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        with contextlib.suppress(OSError):  # a full disk must not stop the worker
            tmp.write_text(body + "\n")
            os.replace(tmp, self.path)

    def remove(self) -> None:
        """The worker is exiting: it is no longer healthy."""
        if self.path is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()


@dataclass(frozen=True)
class Health:
    """The answer of :func:`check`."""

    ok: bool
    message: str


def check(path: Path | None, max_age: float = DEFAULT_MAX_AGE) -> Health:
    """Whether the worker that writes ``path`` is alive and looping."""
    if path is None:
        return Health(False, "RUNNER_HEALTH_FILE is not set, so the worker writes no health")
    try:
        age = time.time() - path.stat().st_mtime
        data = json.loads(path.read_text())
        pid, name, state = int(data["pid"]), str(data["name"]), str(data["state"])
    except FileNotFoundError:
        return Health(False, f"no worker health at {path} (not started, or exited)")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return Health(False, f"unreadable worker health at {path}: {exc}")
    if not pid_exists(pid):
        return Health(False, f"worker {name} (pid {pid}) is gone")
    if age > max_age:
        return Health(False, f"worker {name} has not looped for {age:.0f} s (state {state})")
    return Health(True, f"worker {name} is {state} ({age:.1f} s ago)")
