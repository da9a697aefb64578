"""What the Redis/Valkey server's configuration means for runs: checked when a worker starts.

Each finding has a severity: ``fatal`` (a worker refuses to start), ``warn`` (it starts
and says what is at risk) or ``ok``. The worker command uses them today; ``runner doctor``
can print them all later.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

import redis


class Severity(enum.Enum):
    OK = "ok"
    WARN = "warn"
    FATAL = "fatal"


@dataclass(frozen=True)
class Finding:
    """One thing learnt about the server, and how much it matters."""

    severity: Severity
    message: str


class ConfigReader(Protocol):
    """The one call the checks need (a redis client, or a stub in tests)."""

    def config_get(self, pattern: str) -> dict[str, str]: ...


def check_server(client: redis.Redis | ConfigReader) -> list[Finding]:
    """Findings about eviction and persistence, the two ways a server loses runs."""
    try:
        policy = _config(client, "maxmemory-policy", "")
        aof = _config(client, "appendonly", "no")
        save = _config(client, "save", "")
    except redis.ResponseError:
        return [
            Finding(
                Severity.WARN,
                "cannot read the server's configuration (CONFIG GET refused); "
                "check maxmemory-policy (noeviction) and persistence yourself",
            )
        ]
    return [_eviction(policy), _persistence(aof, save)]


def problems(findings: list[Finding]) -> list[Finding]:
    """The findings that are not ``ok``."""
    return [f for f in findings if f.severity is not Severity.OK]


def _config(client: redis.Redis | ConfigReader, name: str, default: str) -> str:
    value = client.config_get(name).get(name, default)
    return value.decode() if isinstance(value, bytes) else str(value)


def _eviction(policy: str) -> Finding:
    if not policy or policy == "noeviction":
        return Finding(Severity.OK, f"maxmemory-policy is {policy or 'unset'}")
    if policy.startswith("allkeys-"):
        return Finding(
            Severity.FATAL,
            f"maxmemory-policy is {policy}: the server may evict any run's keys (records, "
            "streams, leases) when memory is full; set maxmemory-policy noeviction",
        )
    return Finding(
        Severity.WARN,
        f"maxmemory-policy is {policy}: keys with a TTL may be evicted when memory is full, "
        "and ended runs kept for retention have one (their transcripts can vanish before "
        "retention ends); use noeviction",
    )


def _persistence(aof: str, save: str) -> Finding:
    if aof == "yes" or save:
        return Finding(Severity.OK, "persistence is on")
    return Finding(
        Severity.WARN, "persistence is off (no AOF, no RDB): a server restart loses every run"
    )
