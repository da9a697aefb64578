"""Commits that reach replicas before the turn acts on them (``RUNNER_COMMIT_REPLICAS``).

Redis replicates asynchronously: a commit the primary acknowledged can still be lost if
the primary dies before a replica has it and Sentinel promotes that replica. With
``RUNNER_COMMIT_REPLICAS=N`` every commit is followed, in the same round trip and on the
same connection, by ``WAIT N timeout`` (or, with ``RUNNER_COMMIT_AOF`` on a server that
has it, ``WAITAOF 1 N timeout``: fsynced locally and on N replicas). Fewer than N
acknowledgements is an outage (``NOREPLICAS``): the turn waits and retries the pair,
and the commit script's own check (the stream is already longer by exactly these events)
keeps the retry from appending twice, while it re-appends a commit the failover lost.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from runner.errors import StaleEpoch
from runner.events import Event
from runner.store import Commit, RunStore, commit_args

log = logging.getLogger("runner.replication")
WAITAOF_SINCE = (7, 2)


class TooFewReplicas(redis.ResponseError):
    """A commit reached fewer replicas than RUNNER_COMMIT_REPLICAS within the timeout.

    Its message starts with NOREPLICAS, so runner.outage treats it as the server
    refusing writes for now (guarantee 10): waited out and retried, never a crash.
    """


@dataclass(frozen=True)
class Replication:
    """How many replicas must hold a commit, how long to wait, and with which command."""

    replicas: int
    timeout_ms: int
    aof: bool = False


def for_settings(settings: Any, client: redis.Redis) -> Replication | None:
    """The replication a worker's commits need (None: plain commits)."""
    if settings.commit_replicas == 0 and not settings.commit_aof:
        return None
    aof = bool(settings.commit_aof)
    if aof and server_version(client) < WAITAOF_SINCE:
        # The worker refused such a server at start (refusal); this is a failover to one.
        log.warning("RUNNER_COMMIT_AOF needs Redis/Valkey 7.2 or later; using WAIT instead")
        aof = False
    return Replication(settings.commit_replicas, settings.commit_replicas_timeout_ms, aof)


def refusal(settings: Any, client: redis.Redis) -> str:
    """Why a worker must not start with these commit settings on this server ('' if it
    may): RUNNER_COMMIT_AOF promises that the turn acts only on fsynced commits, which
    needs WAITAOF (Redis/Valkey 7.2+) and the server's AOF on. Refusing at start, in one
    line, beats running a fleet on a promise it cannot keep."""
    if not settings.commit_aof:
        return ""
    version = server_version(client)
    if version < WAITAOF_SINCE:
        return (
            f"RUNNER_COMMIT_AOF needs WAITAOF, which this server ({version[0]}.{version[1]}) "
            "lacks: use Redis or Valkey 7.2 or later, or unset it "
            "(RUNNER_COMMIT_REPLICAS=N still waits for replicas)"
        )
    info: dict[str, Any] = client.info("persistence")
    if not int(info.get("aof_enabled", 0)):
        return "RUNNER_COMMIT_AOF needs the server's AOF on (appendonly yes), or unset it"
    return ""


def server_version(client: redis.Redis) -> tuple[int, int]:
    """The server's (major, minor) from INFO (Valkey reports a compatible redis_version)."""
    info: dict[str, Any] = client.info("server")
    major, minor, *_ = (str(info.get("redis_version", "0.0")) + ".0").split(".")
    return int(major), int(minor)


def commit(
    store: RunStore,
    replication: Replication | None,
    run_id: str,
    epoch: int,
    events: Sequence[Event],
    seen: int,
    steps: int,
    blobs: Mapping[str, bytes] | None = None,
) -> Commit:
    """``store.commit``, then WAIT (or WAITAOF) on the same connection, one round trip."""
    if replication is None:
        return store.commit(run_id, epoch, events, seen, steps, blobs)
    script = store._scripts["commit"]
    keys = store._keys(run_id)
    args = [run_id, *commit_args(epoch, events, seen, steps, blobs)]
    for attempt in (1, 2):
        # Not a transaction: WAIT is refused inside MULTI, and the pipeline keeps both
        # commands on one connection (WAIT counts that connection's writes).
        pipe = store.redis.pipeline(transaction=False)
        pipe.evalsha(script.sha, len(keys), *keys, *args)
        if replication.aof:
            pipe.execute_command("WAITAOF", 1, replication.replicas, replication.timeout_ms)
        else:
            pipe.wait(replication.replicas, replication.timeout_ms)
        reply, acked = pipe.execute(raise_on_error=False)
        if isinstance(reply, redis.exceptions.NoScriptError) and attempt == 1:
            store.redis.script_load(script.script)  # a restarted or new primary
            continue
        break
    if isinstance(reply, Exception):
        if "STALE" in str(reply):
            raise StaleEpoch(f"run {run_id}: {str(reply).split('STALE ', 1)[-1]}") from reply
        raise reply
    if isinstance(acked, Exception):
        raise acked
    got = int(acked[1]) if replication.aof else int(acked)
    if replication.aof and int(acked[0]) < 1:  # not fsynced on the primary in time
        raise TooFewReplicas(
            f"NOREPLICAS commit not fsynced on the primary within {replication.timeout_ms} ms"
        )
    if got < replication.replicas:
        raise TooFewReplicas(
            f"NOREPLICAS commit reached {got} of {replication.replicas} replicas "
            f"within {replication.timeout_ms} ms"
        )
    last, inbox = reply
    return Commit(str(last), int(inbox))
