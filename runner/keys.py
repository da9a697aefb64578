"""Every Redis key name runner uses, and the patterns that guard the names in them.

All of one run's keys carry the hash tag ``{ID}``, so they stay together (one slot, were
they ever sharded). The indexes (runs, active, queued, sessions) and each session's set
are global keys, and every script writes some of them as well as the run's own keys: the
scripts are multi-slot, and Redis Cluster is not supported (RQ's keys are multi-slot
too). Nothing outside this module builds a key name.

``SCRIPT_KEYS`` names the KEYS every Lua script takes, in order: the store passes them in
this order and the scripts read them by name (``K.record``, ``K.events``, ...) from a
table generated from the same tuple.
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
SESSION_PATTERN = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
TENANT_PATTERN = SESSION_PATTERN  # submit --key (issue 17): the same alphabet as a session

# A run's own keys (the Keys method of each name takes the run id); they expire together.
RUN_KEYS = (
    *("record", "events", "lease", "inbox", "script", "manifest", "blobs"),
    *("history", "system"),
)
# Global keys (Keys properties), then the session's own set (present only when the run
# belongs to a session: the last slots, so the others never move), then the record of
# the session's newest turn (session_turn.lua only, runner.sessions).
INDEX_KEYS = ("runs", "active", "queued", "sessions")
SCRIPT_KEYS = (*RUN_KEYS, *INDEX_KEYS, "session", "prev")


def new_run_id(ms: int | None = None) -> str:
    """A fresh run id: time-ordered (now, or ``ms``), unguessable suffix."""
    ms = int(time.time() * 1000) if ms is None else ms
    digits = "".join(_B32[(ms >> (5 * i)) & 31] for i in reversed(range(10)))
    return f"r{digits}{secrets.token_hex(4)}"


def created_ms(run_id: str) -> int:
    """When a well-formed run id was made (ms since the epoch, the making host's clock)."""
    return int(check_run_id(run_id)[1:11], 32)


def check_run_id(value: str) -> str:
    """Return ``value`` if it is a well-formed run id, else raise BadInput."""
    if not isinstance(value, str) or not RUN_ID_PATTERN.fullmatch(value):
        shown = _shown(value) if isinstance(value, str) else repr(value)
        raise BadInput(f"not a run id: {shown} (expected r + 18 lowercase letters/digits)")
    return value


def _shown(text: str) -> str:
    return repr(text[:MAX_ID_SHOWN] + ("..." if len(text) > MAX_ID_SHOWN else ""))


def check_session(name: str) -> str:
    """Return ``name`` if it is a well-formed session name, else raise BadInput."""
    if not isinstance(name, str) or not SESSION_PATTERN.fullmatch(name):
        shown = _shown(name) if isinstance(name, str) else repr(name)
        raise BadInput(f"not a session name: {shown} (expected 1-64 of A-Z a-z 0-9 _ . : -)")
    return name


def check_tenant(name: str) -> str:
    """Return ``name`` if it is a well-formed fairness key (``submit --key``), else BadInput."""
    if not isinstance(name, str) or not TENANT_PATTERN.fullmatch(name):
        shown = _shown(name) if isinstance(name, str) else repr(name)
        raise BadInput(f"not a key: {shown} (expected 1-64 of A-Z a-z 0-9 _ . : -)")
    return name


def is_run_id(value: object) -> bool:
    """Whether ``value`` is a well-formed run id (for readers that skip what is not)."""
    return isinstance(value, str) and RUN_ID_PATTERN.fullmatch(value) is not None


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

    def manifest(self, run_id: str) -> str:
        """Hash: the last committed workspace, path -> entry JSON (kept by the scripts)."""
        return self._run(run_id, "manifest")

    def blobs(self, run_id: str) -> str:
        """Hash: file contents of the run's workspace by sha256 (RUNNER_WORKSPACE_STORE=redis)."""
        return self._run(run_id, "blobs")

    def history(self, run_id: str) -> str:
        """String: JSON list of the messages a session turn or fork continues (runner.sessions)."""
        return self._run(run_id, "history")

    def system(self, run_id: str) -> str:
        """String: the run's system prompt, resolved at submit time (issue 13)."""
        return self._run(run_id, "system")

    def deltas(self, run_id: str) -> str:
        """Stream: the run's in-flight output (deltas), capped and short-lived; never read
        back by a turn, so it is in no script's KEYS (issue 12)."""
        return self._run(run_id, "deltas")

    def run_keys(self, run_id: str) -> list[str]:
        """All keys of one run (for retention and deletion)."""
        return [self._run(run_id, what) for what in RUN_KEYS]

    def script_keys(self, run_id: str, session: str = "", prev: str = "") -> list[str]:
        """The KEYS of a Lua script for one run, in ``SCRIPT_KEYS`` order.

        The session slot is filled only when ``session`` is given (``create``), the prev
        slot (the record of the session's newest turn) only when ``prev`` is too.
        """
        keys = self.run_keys(run_id) + [getattr(self, name) for name in INDEX_KEYS]
        if not session:
            return keys
        return [*keys, self.session(session), *([self.record(prev)] if prev else [])]

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
        """Sorted set: run ids of one session, scored by creation (ms, server clock)."""
        return f"{self.prefix}:session:{check_session(name)}"

    # Fairness (issue 17, runner/fairness.py): one key's slots and its deferred runs.

    def tenant_slots(self, tenant: str) -> str:
        """Hash: run id -> "EPOCH EXPIRY_MS" of each turn holding one of the key's slots."""
        return f"{self.prefix}:tenant:{{{check_tenant(tenant)}}}:slots"

    def tenant_waiting(self, tenant: str) -> str:
        """List: ids of the key's runs deferred because its slots were full, in turn order."""
        return f"{self.prefix}:tenant:{{{check_tenant(tenant)}}}:waiting"

    @property
    def tenants(self) -> str:
        """Set: keys that hold slots or have deferred runs (what the sweeper looks at)."""
        return f"{self.prefix}:index:tenants"

    @property
    def deferred(self) -> str:
        """Set: ids of every run in some key's waiting list (the sweeper skips them)."""
        return f"{self.prefix}:index:deferred"

    @property
    def blob_sweep(self) -> str:
        """String with a TTL: held by the one sweeper that cleans blob stores this period."""
        return f"{self.prefix}:lock:blob-sweep"

    @property
    def tokens(self) -> str:
        """Hash: sha256 hex of an API token -> JSON {name, read_only, created_ms} (issue 15)."""
        return f"{self.prefix}:auth:tokens"

    @property
    def token_names(self) -> str:
        """Hash: API token name -> the sha256 hex of its token (issue 15)."""
        return f"{self.prefix}:auth:names"

    @property
    def sweep_lock(self) -> str:
        """String: held for one sweep so sweepers on many workers don't all scan at once."""
        return f"{self.prefix}:lock:sweep"
