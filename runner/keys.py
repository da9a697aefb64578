"""Every Redis key name runner uses, and the id pattern that guards them.

All of one run's keys carry the hash tag ``{ID}`` so they share one cluster slot; the
indexes are global. Nothing outside this module builds a key name.
"""

from __future__ import annotations

import re
import secrets
import time

from runner.errors import BadInput

# run ids: "r" + 12 base32hex digits of milliseconds + 8 random hex digits; sortable by
# creation time, and nothing else ever passes the pattern below.
RUN_ID_PATTERN = re.compile(r"^r[0-9a-v]{10}[0-9a-f]{8}$")
_B32 = "0123456789abcdefghijklmnopqrstuv"
MAX_ID_SHOWN = 40  # a rejected id is echoed back at most this long


def new_run_id() -> str:
    """A fresh run id: time-ordered, unguessable suffix."""
    ms = int(time.time() * 1000)
    digits = "".join(_B32[(ms >> (5 * i)) & 31] for i in reversed(range(10)))
    return f"r{digits}{secrets.token_hex(4)}"


def check_run_id(value: str) -> str:
    """Return ``value`` if it is a well-formed run id, else raise BadInput."""
    if not isinstance(value, str) or not RUN_ID_PATTERN.fullmatch(value):
        text = value if isinstance(value, str) else repr(value)
        shown = repr(text[:MAX_ID_SHOWN] + ("..." if len(text) > MAX_ID_SHOWN else ""))
        raise BadInput(f"not a run id: {shown} (expected r + 18 lowercase letters/digits)")
    return value


class Keys:
    """Key names under one prefix."""

    def __init__(self, prefix: str = "runner") -> None:
        self.prefix = prefix

    def _run(self, run_id: str, what: str) -> str:
        return f"{self.prefix}:run:{{{check_run_id(run_id)}}}:{what}"

    def record(self, run_id: str) -> str:
        """Hash: status, epoch, model, queue, times, steps, dirty restarts, worker, error."""
        return self._run(run_id, "record")

    def events(self, run_id: str) -> str:
        """Stream: the run's append-only event log (the checkpoint)."""
        return self._run(run_id, "events")

    def lease(self, run_id: str) -> str:
        """String: the epoch of the attempt holding the run; TTL = lease seconds."""
        return self._run(run_id, "lease")

    def inbox(self, run_id: str) -> str:
        """List: messages sent to the run with ``runner send``, not yet taken in."""
        return self._run(run_id, "inbox")

    def script(self, run_id: str) -> str:
        """String: the scripted model's JSON script, stored at submit time."""
        return self._run(run_id, "script")

    def run_keys(self, run_id: str) -> list[str]:
        """All keys of one run (for retention and deletion)."""
        return [
            self.record(run_id),
            self.events(run_id),
            self.lease(run_id),
            self.inbox(run_id),
            self.script(run_id),
        ]

    @property
    def runs(self) -> str:
        """Sorted set: every run id, scored by last activity (ms, server clock)."""
        return f"{self.prefix}:index:runs"

    @property
    def active(self) -> str:
        """Set: ids of runs whose status is ``running`` (what the sweeper looks at)."""
        return f"{self.prefix}:index:active"

    @property
    def queued(self) -> str:
        """Set: ids of runs whose status is ``queued`` (the sweeper re-pushes lost ones)."""
        return f"{self.prefix}:index:queued"

    @property
    def sessions(self) -> str:
        """Sorted set: session names, scored by last activity."""
        return f"{self.prefix}:index:sessions"

    def session(self, name: str) -> str:
        """Sorted set: run ids of one session, scored by creation."""
        return f"{self.prefix}:session:{name}"

    @property
    def sweep_lock(self) -> str:
        """String: held for one sweep so sweepers on many workers don't all scan at once."""
        return f"{self.prefix}:lock:sweep"
