"""Workspace manifests on a real server: committed in the fenced script, expiring with the run."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from runner.errors import StaleEpoch, WorkspaceError
from runner.events import MessageEvent, Status, StatusEvent, WorkspaceChange, WorkspaceEvent
from runner.keys import new_run_id
from runner.settings import Settings
from runner.store import RunStore
from runner.workspace import manifest as mf
from runner.workspace.blobs import Blobs, open_blobs
from runner.workspace.checkpoint import Checkpoint
from runner.workspace.scan import Scanner
from runner.workspace.tree import materialize
from tests.conftest import Server

FIELDS = {"queue": "q", "model": "scripted"}


def started(store: RunStore) -> tuple[str, int]:
    run_id = new_run_id()
    store.create(run_id, FIELDS, [StatusEvent(status=Status.QUEUED)])
    epoch = store.claim(run_id, "w", 30)
    assert epoch is not None
    return run_id, epoch


def change(path: str, data: bytes) -> WorkspaceChange:
    digest = hashlib.sha256(data).hexdigest()
    return WorkspaceChange(path=path, kind="file", mode=0o644, hash=digest, size=len(data))


def tool(content: str = "ok") -> MessageEvent:
    return MessageEvent(role="tool", content=content, tool_call_id="c", name="shell")


def on(server: Server, where: str = "redis") -> Settings:
    """Settings for the test's server with the blob store ``where``."""
    return Settings(redis_url=server.url, workspace_store=where)


def manifest(store: RunStore, run_id: str) -> mf.Manifest:
    return mf.from_hash(store.redis.hgetall(store.keys.manifest(run_id)))


def test_a_commit_stores_the_blobs_it_carries_and_only_when_it_lands(
    store: RunStore, server: Server
) -> None:
    run_id, epoch = started(store)
    event = WorkspaceEvent(changes=[change("a", b"one")], files=1, bytes=3)
    digest = event.changes[0].hash or ""
    key = store.keys.blobs(run_id)
    with pytest.raises(StaleEpoch):
        store.commit(run_id, epoch + 1, [tool(), event], seen=2, blobs={digest: b"one"})
    assert store.redis.exists(key) == 0, "a fenced commit stored a blob"
    store.commit(run_id, epoch, [tool(), event], seen=2, blobs={digest: b"one"})
    store.commit(run_id, epoch, [tool(), event], seen=2, blobs={digest: b"one"})  # a retry
    assert len(store.events(run_id)) == 4
    blobs = open_blobs(on(server), store.redis, store.keys, run_id)
    assert blobs.get_many([digest]) == {digest: b"one"}
    assert manifest(store, run_id) == mf.fold(store.events(run_id))


def test_the_manifest_moves_with_the_commit_and_only_with_it(store: RunStore) -> None:
    run_id, epoch = started(store)
    first = WorkspaceEvent(changes=[change("a", b"1"), change("b", b"2")], files=2, bytes=2)
    store.commit(run_id, epoch, [tool(), first], seen=2)
    assert sorted(manifest(store, run_id)) == ["a", "b"]
    # A retry of the same commit (its reply lost) applies nothing twice.
    store.commit(run_id, epoch, [tool(), first], seen=2)
    assert len(store.events(run_id)) == 4
    second = WorkspaceEvent(changes=[WorkspaceChange(path="a", kind="deleted")], files=1, bytes=1)
    with pytest.raises(StaleEpoch):
        store.commit(run_id, epoch + 1, [tool(), second], seen=4)
    assert sorted(manifest(store, run_id)) == ["a", "b"], "a fenced commit changed the manifest"
    store.commit(run_id, epoch, [tool(), second], seen=4)
    assert manifest(store, run_id) == mf.fold(store.events(run_id))
    assert sorted(manifest(store, run_id)) == ["b"]


def test_a_note_past_the_cap_shows_in_the_record(store: RunStore) -> None:
    run_id, epoch = started(store)
    note = WorkspaceEvent(changes=[], note="over the cap")
    store.commit(run_id, epoch, [tool(), note], seen=2)
    assert store.get(run_id).workspace == "over the cap"


def test_manifest_and_blobs_expire_with_the_run(store: RunStore, server: Server) -> None:
    run_id, epoch = started(store)
    blobs = open_blobs(on(server), store.redis, store.keys, run_id)
    blobs.put({hashlib.sha256(b"1").hexdigest(): b"1"})
    store.commit(run_id, epoch, [tool(), WorkspaceEvent(changes=[change("a", b"1")])], seen=2)
    store.finish(run_id, epoch, Status.SUCCEEDED)
    for key in (store.keys.manifest(run_id), store.keys.blobs(run_id)):
        assert 0 < store.redis.pttl(key) <= store.retention_ms, key


@pytest.fixture(params=["redis", "file"])
def any_blobs(
    request: pytest.FixtureRequest, store: RunStore, server: Server, tmp_path: Path
) -> Blobs:
    where = "redis" if request.param == "redis" else f"file://{tmp_path / 'shared'}"
    return open_blobs(on(server, where), store.redis, store.keys, new_run_id())


def test_two_hosts_share_one_workspace(store: RunStore, any_blobs: Blobs, tmp_path: Path) -> None:
    one = tmp_path / "one"
    (one / "d").mkdir(parents=True)
    (one / "d" / "x.bin").write_bytes(bytes(range(256)) * 100)
    (one / "l").symlink_to("d/x.bin")
    cp = Checkpoint(one, any_blobs, {}, 1 << 20, ())
    event, _ = cp.step()
    assert event is not None
    any_blobs.put(cp.inline)  # what the commit script does with a Redis store
    cp.committed(event)
    written = materialize(tmp_path / "two", cp.manifest.values(), any_blobs)
    assert written.bytes == 25600
    assert Scanner(tmp_path / "two", 1 << 20).scan().entries == cp.manifest
    any_blobs.delete_run()
    with pytest.raises(WorkspaceError, match="missing"):
        materialize(tmp_path / "three", cp.manifest.values(), any_blobs)


def test_a_sweep_removes_the_blobs_of_runs_that_expired_and_only_those(
    store: RunStore, server: Server, tmp_path: Path
) -> None:
    import time

    from runner.settings import Settings
    from runner.workspace.retention import sweep_blob_store

    url = f"file://{tmp_path / 'shared'}"
    hours_ago = int(time.time() * 1000) - 2 * 3600 * 1000
    expired, kept, young = new_run_id(hours_ago), new_run_id(hours_ago), new_run_id()
    for run_id in (expired, kept, young):
        open_blobs(on(server, url), store.redis, store.keys, run_id).put(
            {hashlib.sha256(b"x").hexdigest(): b"x"}
        )
    store.redis.hset(store.keys.record(kept), "status", "succeeded")
    (tmp_path / "shared" / store.keys.prefix / "not-a-run").mkdir()
    settings = Settings(workspace_store=url, prefix=store.keys.prefix)
    assert sweep_blob_store(store, settings) == 1
    left = sorted(p.name for p in (tmp_path / "shared" / store.keys.prefix).iterdir())
    assert left == sorted([kept, young, "not-a-run"])
    store.redis.delete(store.keys.record(kept))
    assert sweep_blob_store(store, settings) == 0, "a second sweeper in the same period"
    assert sweep_blob_store(store, settings, force=True) == 1
    redis_store = Settings(workspace_store="redis", prefix=store.keys.prefix)
    assert sweep_blob_store(store, redis_store, force=True) == 0


def test_a_restore_left_midway_leaves_the_connection_clean(
    store: RunStore, server: Server, tmp_path: Path
) -> None:
    """A restore stopped between chunks (a write failed) has a reply still on its way:
    the client must not hand that connection to the next command."""
    settings = on(server)
    blobs = open_blobs(settings, store.redis, store.keys, new_run_id())
    contents = {f"f{i:03d}": bytes([i]) * 300_000 for i in range(12)}  # a few chunks
    blobs.put({hashlib.sha256(d).hexdigest(): d for d in contents.values()})
    wanted = [(hashlib.sha256(d).hexdigest(), len(d)) for d in contents.values()]
    chunks = blobs.fetch(wanted)
    first = next(chunks)
    assert len(first) < len(wanted), "one chunk: nothing was left in flight"
    chunks.close()  # as a failed write leaves it
    again = {digest: data for chunk in blobs.fetch(wanted) for digest, data in chunk.items()}
    assert again == {hashlib.sha256(d).hexdigest(): d for d in contents.values()}
    entries = [change(path, data) for path, data in contents.items()]
    materialize(tmp_path / "out", entries, blobs)
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == contents
    blobs.delete_run()
