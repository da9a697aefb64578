"""runner.replication against a real redis-server: WAIT's shortfall, fencing, NOSCRIPT.

(fakeredis has no WAIT; the replica case runs end to end in tests/e2e/test_connections.py.)
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from runner import replication
from runner.errors import StaleEpoch
from runner.events import MessageEvent, Status, StatusEvent
from runner.keys import Keys, new_run_id
from runner.replication import Replication, TooFewReplicas
from runner.settings import Settings
from runner.store import RunStore
from tests.redisproc import RedisProc, redis_server


@pytest.fixture
def plain(tmp_path: Path) -> Iterator[RedisProc]:
    srv = redis_server(tmp_path / "redis").start()
    yield srv
    srv.stop()


def running(store: RunStore) -> tuple[str, int]:
    run_id = new_run_id()
    store.create(
        run_id,
        {"queue": "default", "model": "scripted", "max_steps": "5"},
        [StatusEvent(status=Status.QUEUED), MessageEvent(role="user", content="hi")],
    )
    epoch = store.claim(run_id, "w", 30.0)
    assert epoch is not None
    return run_id, epoch


def test_too_few_replicas_raises_and_a_retry_appends_nothing(plain: RedisProc) -> None:
    store = RunStore(plain.client(), Keys())
    run_id, epoch = running(store)
    seen = len(store.events(run_id))
    step = [MessageEvent(role="assistant", content="one")]
    need_one = Replication(replicas=1, timeout_ms=20)
    for _ in range(2):  # the outage retry calls it again with the same arguments
        with pytest.raises(TooFewReplicas, match="NOREPLICAS commit reached 0 of 1"):
            replication.commit(store, need_one, run_id, epoch, step, seen, 1)
    assert [e.content for e in store.events(run_id) if e.type == "message"] == ["hi", "one"]  # type: ignore[union-attr]
    assert store.get(run_id).steps == 1


def test_stale_epoch_and_a_flushed_script_cache(plain: RedisProc) -> None:
    store = RunStore(plain.client(), Keys())
    run_id, epoch = running(store)
    seen = len(store.events(run_id))
    none_needed = Replication(replicas=0, timeout_ms=20)
    with pytest.raises(StaleEpoch):
        replication.commit(store, none_needed, run_id, epoch + 1, [], seen, 0)
    plain.client().script_flush()  # as on a new primary after a failover
    step = [MessageEvent(role="assistant", content="after flush")]
    done = replication.commit(store, none_needed, run_id, epoch, step, seen, 1)
    assert done.last_id == store.events(run_id)[-1].id


def test_waitaof_only_on_new_enough_servers(plain: RedisProc) -> None:
    client = plain.client()
    version = replication.server_version(client)
    settings = Settings(_env_file=None, commit_aof=True, commit_replicas=1)  # type: ignore[call-arg]
    chosen = replication.for_settings(settings, client)
    assert chosen is not None and chosen.replicas == 1
    assert chosen.aof is (version >= replication.WAITAOF_SINCE)
    assert replication.for_settings(Settings(_env_file=None), client) is None  # type: ignore[call-arg]
