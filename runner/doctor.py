"""``runner doctor``: check a configuration end to end and say what to fix.

Each check is one :class:`Check`: a name, whether it passed, what was found, and (when it
failed) what to do. The server checks need the server; when it cannot be reached they
are reported as not checked (failed), so the exit code still says "not ready".
Nothing here prints a secret: a provider key is reported by the variable that holds it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import redis
from rq import Queue
from rq.worker import Worker

from runner.connection import check_answers, connect, redis_url, safe_url
from runner.errors import BadInput, RunnerError, WorkspaceError
from runner.keys import Keys
from runner.providers import PROVIDERS, check_model_spec
from runner.serverinfo import Severity, check_server
from runner.settings import Settings
from runner.store import RunStore
from runner.workspace.blobs import FsspecBlobs

MIN_VERSION = (7, 0)
MAX_SKEW = 1.0  # seconds between this host's clock and the server's before it is a problem
# What a worker needs after RUNNER_SHUTDOWN_GRACE: the horse is killed at grace + 0.5 s,
# then the run is requeued and the worker deregisters. The platform must wait that long.
STOP_MARGIN = 5.0
# check_server's findings, in its order: what each is called here and how to fix it.
CONFIG_FIXES = (
    ("maxmemory-policy", "CONFIG SET maxmemory-policy noeviction (and in the server's config)"),
    ("persistence", "turn on AOF (appendonly yes) or RDB snapshots (save ...)"),
)


@dataclass(frozen=True)
class Check:
    """One line of the report."""

    name: str
    ok: bool
    message: str
    fix: str = ""

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def run_checks(settings: Settings, grace_period: float | None = None) -> list[Check]:
    """Every check, in the order they are shown."""
    checks: list[Check] = []
    client, url, server = _reach(settings)
    checks.append(server)
    if client is None:
        names = ("configuration", "clock", "scripts", "workers")
        checks += [Check(n, False, "not checked: the server is unreachable") for n in names]
    else:
        try:
            checks += _server_checks(client, url, settings)
        finally:
            client.close()
    checks += timing_checks(settings, grace_period)
    checks.append(workspace_check(settings, reachable=client is not None))
    checks.append(provider_check(settings.model, settings))
    return checks


def _server_checks(client: redis.Redis, url: str, settings: Settings) -> list[Check]:
    out: list[Check] = []
    steps: list[Callable[[], list[Check]]] = [
        lambda: config_checks(client),
        lambda: [clock_check(client)],
        lambda: [scripts_check(client, settings)],
        lambda: worker_checks(client, url, settings),
    ]
    for step in steps:
        try:
            out += step()
        except (redis.RedisError, RunnerError) as exc:
            out.append(Check("server", False, f"a check failed: {exc}"))
    return out


# -- the server -----------------------------------------------------------------------


def _reach(settings: Settings) -> tuple[redis.Redis | None, str, Check]:
    url = ""
    try:
        url = redis_url(settings)
        check_answers(url)
        client = connect(settings, url=url, probe=False)
        info = client.info("server")
    except (RunnerError, redis.RedisError) as exc:
        fix = "start the server or fix RUNNER_REDIS_URL"
        return None, url, Check("server", False, str(exc), fix)
    name = "valkey" if info.get("valkey_version") else "redis"
    version = str(info.get("valkey_version") or info.get("redis_version") or "?")
    where = safe_url(url) if settings.redis_url else f"embedded, data in {settings.data_dir}"
    message = f"{name} {version} at {where}"
    if _version(version) < MIN_VERSION:
        return (
            client,
            url,
            Check("server", False, message, "runner needs Redis 7.0+ or Valkey 7.2+"),
        )
    return client, url, Check("server", True, message)


def _version(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(".")[:2])
    except ValueError:
        return (0,)


def config_checks(client: redis.Redis) -> list[Check]:
    """Eviction policy and persistence, from :func:`runner.serverinfo.check_server`."""
    findings = check_server(client)
    if len(findings) != len(CONFIG_FIXES):  # CONFIG GET refused: one warning
        return [Check("configuration", False, findings[0].message)]
    return [
        Check(name, f.severity is Severity.OK, f.message, "" if f.severity is Severity.OK else fix)
        for (name, fix), f in zip(CONFIG_FIXES, findings, strict=True)
    ]


def clock_check(client: redis.Redis) -> Check:
    """This host's clock against the server's (TIME), allowing for the round trip."""
    before = time.time()
    seconds, micros = client.time()
    after = time.time()
    skew = int(seconds) + int(micros) / 1e6 - (before + after) / 2
    allowed = MAX_SKEW + (after - before) / 2
    if abs(skew) <= allowed:
        return Check("clock", True, f"this host and the server agree within {allowed:.2f} s")
    message = f"this host's clock is {abs(skew):.3f} s {'behind' if skew > 0 else 'ahead of'}"
    message += " the server's"
    return Check(
        "clock",
        False,
        message,
        "sync the clocks (NTP); leases use the server's clock, but times shown and "
        "compared on this host are off by that much",
    )


def scripts_check(client: redis.Redis, settings: Settings) -> Check:
    """SCRIPT LOAD of every Lua script the store runs."""
    store = RunStore(client, Keys(settings.prefix), settings.retention_seconds)
    sources = store.script_sources()
    for name, source in sources.items():
        try:
            client.script_load(source)
        except redis.ResponseError as exc:
            return Check(
                "scripts",
                False,
                f"the server refuses the {name} script: {exc}",
                "runner needs Redis 7.0+ with Lua scripting allowed for this user",
            )
    return Check("scripts", True, f"{len(sources)} scripts load")


def worker_checks(client: redis.Redis, url: str, settings: Settings) -> list[Check]:
    """A live worker on each queue that has queued runs."""
    store = RunStore(client, Keys(settings.prefix), settings.retention_seconds)
    waiting: dict[str, int] = {}
    for record in store.get_many(store.queued_ids()):
        if not record.damaged:
            waiting[record.queue] = waiting.get(record.queue, 0) + 1
    rq_conn = connect(settings, decode=False, url=url, probe=False)
    try:
        if not waiting:
            live = _live_workers(rq_conn, settings.queue, settings)
            return [Check("workers", True, f"no runs waiting; {live} live on {settings.queue}")]
        return [_queue_check(rq_conn, q, n, settings) for q, n in sorted(waiting.items())]
    finally:
        rq_conn.close()


def _queue_check(rq_conn: redis.Redis, queue: str, runs: int, settings: Settings) -> Check:
    live = _live_workers(rq_conn, queue, settings)
    message = f"queue {queue}: {runs} run(s) waiting, {live} live worker(s)"
    if live:
        return Check("workers", True, message)
    return Check("workers", False, message, f"start one: runner worker --queue {queue}")


def _live_workers(rq_conn: redis.Redis, queue: str, settings: Settings) -> int:
    """Workers of ``queue`` that are alive: no death date and a recent heartbeat."""
    # A worker heartbeats at least every sweep interval; its key lives sweep + 16 s.
    stale_after = settings.sweep_seconds + 16
    now = datetime.now(UTC)
    count = 0
    for worker in Worker.all(queue=Queue(queue, connection=rq_conn)):
        beat = worker.last_heartbeat
        if beat is not None and beat.tzinfo is None:
            beat = beat.replace(tzinfo=UTC)
        if worker.death_date is None and beat and (now - beat).total_seconds() < stale_after:
            count += 1
    return count


# -- settings that need no server --------------------------------------------------------


def timing_checks(settings: Settings, grace_period: float | None) -> list[Check]:
    """Lease against sweep, and the shutdown grace against the platform's stop timeout."""
    lease, sweep, grace = settings.lease_seconds, settings.sweep_seconds, settings.shutdown_grace
    out = []
    message = f"lease {lease:g} s, sweep every {sweep:g} s: a dead worker's run is back "
    message += f"within {lease + sweep:g} s"
    if lease < sweep:
        out.append(
            Check(
                "lease",
                False,
                f"lease {lease:g} s is shorter than the sweep interval {sweep:g} s",
                "set RUNNER_SWEEP_SECONDS at most RUNNER_LEASE_SECONDS (a third of it is usual)",
            )
        )
    else:
        out.append(Check("lease", True, message))
    need = grace + STOP_MARGIN
    if grace_period is None:
        out.append(
            Check(
                "grace",
                True,
                f"shutdown grace {grace:g} s; the platform's stop timeout must be at least "
                f"{need:g} s (check it with --grace-period S)",
            )
        )
    elif grace_period < need:
        out.append(
            Check(
                "grace",
                False,
                f"shutdown grace {grace:g} s + {STOP_MARGIN:g} s margin is longer than the "
                f"platform's stop timeout {grace_period:g} s: a worker is killed mid-handoff",
                f"lower RUNNER_SHUTDOWN_GRACE to {max(grace_period - STOP_MARGIN, 0):g} s or "
                f"raise the stop timeout (terminationGracePeriodSeconds, stop_grace_period) "
                f"to {need:g} s",
            )
        )
    else:
        msg = f"shutdown grace {grace:g} s + {STOP_MARGIN:g} s fits in {grace_period:g} s"
        out.append(Check("grace", True, msg))
    return out


def workspace_check(settings: Settings, reachable: bool) -> Check:
    """The workspace store: the server itself, or a URL a probe blob is written to and read."""
    store = settings.workspace_store
    if store == "redis":
        if not reachable:
            return Check("workspace", False, "not checked: the server is unreachable")
        return Check("workspace", True, "contents kept in the run's own Redis keys")
    where = safe_url(store)
    probe = f"doctor-{secrets.token_hex(6)}"  # a directory of its own, never a run's
    data = f"runner doctor probe {probe}\n".encode()
    digest = hashlib.sha256(data).hexdigest()
    try:
        blobs = FsspecBlobs(store, settings.prefix, probe)
        try:
            blobs.put({digest: data})
            blobs.get_many([digest])
        finally:
            blobs.delete_run()
    except BadInput as exc:
        return Check("workspace", False, f"{where}: {exc}", "pip install 'runner[workspace]'")
    except (WorkspaceError, OSError) as exc:
        return Check(
            "workspace",
            False,
            f"{where} is not writable: {str(exc).splitlines()[0] if str(exc) else exc!r}",
            "fix RUNNER_WORKSPACE_STORE or the store's permissions; every worker and "
            "`runner submit --workspace` need to write there",
        )
    return Check("workspace", True, f"{where}: a probe blob was written, read and removed")


def provider_check(model: str, settings: Settings) -> Check:
    """The default model's provider: its SDK installed and its key present (never shown)."""
    try:
        prefix, _ = check_model_spec(model)
    except BadInput as exc:
        return Check("model", False, str(exc), "set RUNNER_MODEL to a known model")
    provider = PROVIDERS[prefix]
    if provider.sdk and importlib.util.find_spec(provider.sdk) is None:
        return Check(
            "model", False, f"{model}: the {provider.sdk} SDK is missing", provider.install
        )
    if not provider.key_vars:
        return Check("model", True, f"{model}: needs no key")
    # RUNNER_<PREFIX>_API_KEY may come from .env, so it is read through the settings.
    configured = getattr(settings, f"{prefix}_api_key", None) is not None
    present = [v for v in provider.key_vars if os.environ.get(v)]
    if configured or present:
        where = present[0] if present else f"RUNNER_{prefix.upper()}_API_KEY"
        return Check("model", True, f"{model}: key present ({where})")
    return Check(
        "model",
        False,
        f"{model}: no key set",
        f"set {' or '.join(provider.key_vars[:2])} where the workers run",
    )
