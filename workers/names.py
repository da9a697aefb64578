"""A worker's name: ``host.pid`` by default, and taking over the name of a dead worker.

RQ refuses to start a worker under a name that is still registered. A worker SIGKILLed
on this host leaves its registration behind until its TTL; these let the next one under
that name start at once, and refuse one that may still be alive.
"""

from __future__ import annotations

import logging
import os
import socket

import redis
from rq.utils import as_text
from rq.worker import Worker

from runner.errors import BadInput
from runner.pids import pid_exists

log = logging.getLogger("runner.worker")


def take_over_name(connection: redis.Redis, key: str, name: str) -> None:
    """Clear the registration of a dead worker named ``name``; BadInput if it may live.

    RQ refuses a name whose worker key has no death date. A worker SIGKILLed on this host
    left such a key (it expires only after its TTL); if its process is gone, this worker
    registers its death for it, as the dead one would have.
    """
    if not connection.exists(key) or connection.hexists(key, "death"):
        return
    fields = {as_text(k): as_text(v) for k, v in connection.hgetall(key).items()}
    host, pid = fields.get("hostname", ""), int(fields.get("pid") or 0)
    if host != socket.gethostname() or _alive(pid):
        where = "on this host" if host == socket.gethostname() else f"on {host or 'another host'}"
        raise BadInput(
            f"a worker named {name} is registered already ({where}, pid {pid}); "
            "stop it or choose another --name"
        )
    old = Worker.find_by_key(key, connection=connection)
    if old is not None:
        old.register_death()  # type: ignore[no-untyped-call]
    log.warning("took over the name of a dead worker (pid %d)", pid, extra={"worker": name})


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a live process other than this one (a container reuses PIDs)."""
    return pid != os.getpid() and pid_exists(pid)


def default_name() -> str:
    """``host.pid``: readable in follow output and unique on one host."""
    return f"{socket.gethostname()}.{os.getpid()}"
