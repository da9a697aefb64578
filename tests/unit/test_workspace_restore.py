"""Restores in chunks: every chunk lands, a corrupt blob stops it, a missing one writes
nothing; and the bytes client blobs use is made like every other client."""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import cast

import fakeredis
import pytest
import redis
from redis.sentinel import SentinelConnectionPool

from runner.connection import connect
from runner.errors import WorkspaceError
from runner.keys import Keys, new_run_id
from runner.settings import Settings
from runner.workspace import blobs as blobs_mod
from runner.workspace.blobs import Blobs, FsspecBlobs, RedisBlobs, bytes_client, open_blobs
from runner.workspace.manifest import Manifest
from runner.workspace.scan import Scanner
from runner.workspace.tree import materialize

MiB = 1024 * 1024


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(params=["redis", "file"])
def blobs(request: pytest.FixtureRequest, tmp_path: Path) -> Blobs:
    run_id = new_run_id()
    if request.param == "redis":
        return RedisBlobs(fakeredis.FakeRedis(), Keys().blobs(run_id))
    return FsspecBlobs(f"file://{tmp_path / 'store'}", "runner", run_id)


def many(root: Path, n: int = 120) -> Manifest:
    """``n`` files of spread sizes in a few directories, two of them with equal contents."""
    rng = random.Random(n)
    for i in range(n):
        d = root / f"d{i % 7}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i:03d}").write_bytes(rng.randbytes(rng.randrange(0, 9000)))
    (root / "same.txt").write_bytes((root / "d0" / "f000").read_bytes())
    (root / "d1" / "run.sh").write_bytes(b"#!/bin/sh\n")
    (root / "d1" / "run.sh").chmod(0o750)
    return Scanner(root, 64 * MiB).scan().entries


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(blobs_mod, "FETCH_BYTES", 16 * 1024)  # dozens of chunks


def test_a_restore_in_many_chunks_reproduces_the_tree(
    tmp_path: Path, blobs: Blobs, small_chunks: None
) -> None:
    src = tmp_path / "src"
    entries = many(src)
    blobs.put({sha(p.read_bytes()): p.read_bytes() for p in src.rglob("*") if p.is_file()})
    wanted = [(e.hash or "", e.size or 0) for e in entries.values() if e.kind == "file"]
    if isinstance(blobs, RedisBlobs):
        assert len(list(blobs.fetch(wanted))) > 10, "the restore was not chunked"
    out = tmp_path / "out"
    written = materialize(out, entries.values(), blobs)
    assert Scanner(out, 64 * MiB).scan().entries == entries
    assert written.files == sum(1 for e in entries.values() if e.kind == "file")
    assert written.bytes == sum(e.size or 0 for e in entries.values() if e.kind == "file")
    assert os.stat(out / "d1" / "run.sh").st_mode & 0o777 == 0o750


def test_a_mode_the_umask_would_narrow_is_kept(tmp_path: Path, blobs: Blobs) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "shared").write_bytes(b"x")
    (src / "shared").chmod(0o666)
    entries = Scanner(src, MiB).scan().entries
    blobs.put({sha(b"x"): b"x"})
    old = os.umask(0o077)
    try:
        materialize(tmp_path / "out", entries.values(), blobs)
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "out" / "shared").st_mode & 0o777 == 0o666


def test_one_blob_missing_among_many_writes_nothing(
    tmp_path: Path, blobs: Blobs, small_chunks: None
) -> None:
    src = tmp_path / "src"
    entries = many(src)
    stored = {sha(p.read_bytes()): p.read_bytes() for p in src.rglob("*") if p.is_file()}
    last = max(entries.values(), key=lambda e: e.path if e.kind == "file" else "")
    del stored[last.hash or ""]  # the last chunk's: found missing before the first write
    blobs.put(stored)
    with pytest.raises(WorkspaceError, match="is missing"):
        materialize(tmp_path / "out", entries.values(), blobs)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("store", "damage"),
    [
        # The run's own Redis blobs are checked by size (blobs.py says why): cut short.
        ("redis", lambda data: data[:-1]),
        # A shared store's are hashed too: the same length, one byte flipped.
        ("file", lambda data: bytes([data[0] ^ 1]) + data[1:]),
    ],
)
def test_a_corrupt_blob_is_never_written_and_stops_the_restore(
    tmp_path: Path, small_chunks: None, store: str, damage: Callable[[bytes], bytes]
) -> None:
    src = tmp_path / "src"
    entries = many(src)
    run_id = new_run_id()
    blobs: Blobs = (
        RedisBlobs(fakeredis.FakeRedis(), Keys().blobs(run_id))
        if store == "redis"
        else FsspecBlobs(f"file://{tmp_path / 'store'}", "runner", run_id)
    )
    stored = {sha(p.read_bytes()): p.read_bytes() for p in src.rglob("*") if p.is_file()}
    bad = entries["d3/f059"]
    stored[bad.hash or ""] = damage(stored[bad.hash or ""])
    blobs.put(stored)
    out = tmp_path / "out"
    with pytest.raises(WorkspaceError, match="corrupt"):
        materialize(out, entries.values(), blobs)
    assert not (out / "d3" / "f059").exists()
    for path in out.rglob("*"):  # what did land is the manifest's, byte for byte
        if path.is_file():
            entry = entries[str(path.relative_to(out))]
            assert sha(path.read_bytes()) == entry.hash


class FailingMidway:
    """The run's Redis blobs, with the connection lost after ``good`` chunks."""

    def __init__(self, inner: RedisBlobs, good: int) -> None:
        self.inner, self.good, self.served = inner, good, 0
        self.inline, self.trusted, self.where = inner.inline, inner.trusted, inner.where

    def fetch(self, wanted: Sequence[tuple[str, int]]) -> Iterator[dict[str, bytes]]:
        for chunk in self.inner.fetch(wanted):
            if self.served == self.good:
                raise redis.ConnectionError("Connection reset by peer")
            self.served += 1
            yield chunk


def test_a_fetch_that_fails_midway_stops_the_restore_with_its_error(
    tmp_path: Path, small_chunks: None
) -> None:
    src = tmp_path / "src"
    entries = many(src)
    inner = RedisBlobs(fakeredis.FakeRedis(), Keys().blobs(new_run_id()))
    inner.put({sha(p.read_bytes()): p.read_bytes() for p in src.rglob("*") if p.is_file()})
    blobs = FailingMidway(inner, good=3)
    out = tmp_path / "out"
    with pytest.raises(redis.ConnectionError, match="reset by peer"):
        materialize(out, entries.values(), cast(Blobs, blobs))
    assert blobs.served == 3
    written = [p for p in out.rglob("*") if p.is_file()]
    assert written, "nothing was written before the failure: the test proves nothing"
    for path in written:
        assert sha(path.read_bytes()) == entries[str(path.relative_to(out))].hash


# -- the bytes client -----------------------------------------------------------------------


def test_the_bytes_client_keeps_sentinel_discovery() -> None:
    settings = Settings(redis_url="redis+sentinel://127.0.0.1:1,127.0.0.1:2/mymaster/3")
    client = connect(settings, probe=False)  # nothing is asked until a command is sent
    twin = bytes_client(settings, client)
    pool = twin.connection_pool
    assert isinstance(pool, SentinelConnectionPool), type(pool)
    assert pool.service_name == "mymaster"
    hosts = [
        (c.connection_pool.connection_kwargs["host"], c.connection_pool.connection_kwargs["port"])
        for c in pool.sentinel_manager.sentinels
    ]
    assert hosts == [("127.0.0.1", 1), ("127.0.0.1", 2)]
    assert pool.connection_kwargs["decode_responses"] is False
    assert pool.connection_kwargs["db"] == 3
    assert bytes_client(settings, client) is twin, "one bytes client per client"


def test_the_bytes_client_keeps_the_connection_policy() -> None:
    settings = Settings(redis_url="redis://:secret@127.0.0.1:1/2")
    twin = bytes_client(settings, connect(settings, probe=False))
    made = connect(settings, decode=False, probe=False).connection_pool.connection_kwargs
    kwargs = twin.connection_pool.connection_kwargs
    for name in ("socket_timeout", "socket_connect_timeout", "socket_keepalive", "password", "db"):
        assert kwargs[name] == made[name], name
    assert kwargs["decode_responses"] is False


def test_open_blobs_follows_the_settings(tmp_path: Path) -> None:
    url = f"file://{tmp_path / 'store'}"
    settings = Settings(redis_url="redis://127.0.0.1:1/0", workspace_store=url)
    found = open_blobs(settings, connect(settings, probe=False), Keys(), new_run_id())
    assert isinstance(found, FsspecBlobs) and found.where == url


# -- a checkout's metadata in the diff ------------------------------------------------------


def test_a_checkouts_git_dir_is_counted_not_diffed(tmp_path: Path) -> None:
    from runner.workspace.diffing import unified

    blobs = RedisBlobs(fakeredis.FakeRedis(), Keys().blobs(new_run_id()))
    root = tmp_path / "ws"
    (root / ".git" / "objects" / "ab").mkdir(parents=True)
    (root / ".git" / "index").write_bytes(b"DIRC\x00one")
    (root / "vendor" / "lib" / ".git").mkdir(parents=True)
    (root / "calc.py").write_text("a = 1\n")
    start = Scanner(root, MiB).scan()
    blobs.put(start.fresh)
    (root / ".git" / "index").write_bytes(b"DIRC\x00two")
    (root / ".git" / "objects" / "ab" / "cdef").write_bytes(b"\x78\x01blob")
    (root / "vendor" / "lib" / ".git" / "HEAD").write_text("ref: main\n")
    (root / "calc.py").write_text("a = 2\n")
    end = Scanner(root, MiB).scan()
    blobs.put(end.fresh)
    text = unified(dict(start.entries), dict(end.entries), blobs)
    lines = text.splitlines()
    assert lines[0] == (
        "# .git/: 2 entries changed (repository metadata, not shown; runner pull brings them)"
    )
    assert lines[1].startswith("# vendor/lib/.git/: 1 entry changed")
    assert "diff --runner a/calc.py b/calc.py" in lines and "+a = 2" in lines
    assert ".git/index" not in text and "cdef" not in text


def test_a_restore_tells_its_progress_by_files(tmp_path: Path, small_chunks: None) -> None:
    src = tmp_path / "src"
    entries = many(src)
    blobs = RedisBlobs(fakeredis.FakeRedis(), Keys().blobs(new_run_id()))
    blobs.put({sha(p.read_bytes()): p.read_bytes() for p in src.rglob("*") if p.is_file()})
    seen: list[tuple[int, int]] = []
    materialize(tmp_path / "out", entries.values(), blobs, lambda d, t: seen.append((d, t)))
    files = sum(1 for e in entries.values() if e.kind == "file")
    assert len(seen) > 10 and seen[-1] == (files, files)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
