"""Workspaces without a server: scanning, path rules, writing trees, checkpoints, pull."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import stat
from pathlib import Path
from typing import Any

import fakeredis
import pytest

from runner.errors import BadInput, WorkspaceError
from runner.events import WorkspaceChange, WorkspaceEvent
from runner.keys import Keys, new_run_id
from runner.workspace import access
from runner.workspace.blobs import Blobs, FsspecBlobs, RedisBlobs
from runner.workspace.checkpoint import Checkpoint
from runner.workspace.manifest import check_path, check_target
from runner.workspace.scan import Scanner
from runner.workspace.tree import materialize

MiB = 1024 * 1024


def landed(cp: Checkpoint, event: WorkspaceEvent) -> None:
    """What a commit does with a checkpoint's event: store what it carries, then move on."""
    cp.blobs.put(cp.inline)
    cp.committed(event)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(params=["redis", "file", "memory"])
def blobs(request: pytest.FixtureRequest, tmp_path: Path) -> Blobs:
    run_id = new_run_id()
    if request.param == "redis":
        return RedisBlobs(fakeredis.FakeRedis(), Keys().blobs(run_id))
    url = f"file://{tmp_path / 'store'}" if request.param == "file" else "memory://ws"
    return FsspecBlobs(url, "runner", run_id)


def tree(root: Path) -> Path:
    (root / "d" / "empty").mkdir(parents=True)
    (root / "a.txt").write_text("hello\n")
    (root / "run.sh").write_text("#!/bin/sh\n")
    (root / "run.sh").chmod(0o755)
    (root / "link").symlink_to("a.txt")
    return root


# -- path rules ---------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["", "../x", "a/../../x", "/etc/passwd", "a//b", "./a", "a\x00b"])
def test_bad_paths_are_refused(bad: str) -> None:
    with pytest.raises(WorkspaceError, match="refused"):
        check_path(bad)


def test_the_one_match_path_check_agrees_with_the_part_by_part_rules() -> None:
    """check_path answers most paths with one regex; the rules it stands for, spelled out,
    must give the same answer on every path of a small alphabet (every edge it has)."""

    def by_parts(path: str) -> bool:
        return (
            bool(path)
            and "\x00" not in path
            and "\\" not in path
            and not any(part in ("", ".", "..") for part in path.split("/"))
        )

    alphabet = ["a", ".", "/", "\x00", "\\", "é"]
    paths = [""]
    for _ in range(5):
        paths += [p + c for p in paths[-(6**_) :] for c in alphabet]
    paths += ["a" * 4096, "a" * 4097, "a/" * 2000 + "..", "..a/b..", ".git/x", "a/..."]
    for path in paths:
        try:
            accepted = check_path(path) == path
        except WorkspaceError:
            accepted = False
        assert accepted == (by_parts(path) and len(path) <= 4096), repr(path)


@pytest.mark.parametrize(("path", "target"), [("l", "/etc"), ("l", ".."), ("d/l", "../../x")])
def test_links_that_leave_are_refused(path: str, target: str) -> None:
    with pytest.raises(WorkspaceError, match="refused"):
        check_target(path, target)


def test_links_inside_are_kept() -> None:
    assert check_target("d/l", "../a.txt") == "../a.txt"


# -- scan ---------------------------------------------------------------------------------


def test_scan_keeps_modes_links_and_empty_dirs(tmp_path: Path) -> None:
    found = Scanner(tree(tmp_path / "ws"), MiB).scan()
    e = found.entries
    assert sorted(e) == ["a.txt", "d", "d/empty", "link", "run.sh"]
    assert (e["run.sh"].kind, e["run.sh"].mode) == ("file", 0o755)
    assert (e["link"].kind, e["link"].target) == ("link", "a.txt")
    assert e["d/empty"].kind == "dir"
    assert e["a.txt"].hash == sha(b"hello\n")
    assert found.fresh[sha(b"hello\n")] == b"hello\n"


def test_a_second_scan_reads_only_what_changed(tmp_path: Path) -> None:
    root = tree(tmp_path / "ws")
    scanner = Scanner(root, MiB)
    scanner.scan()
    assert scanner.scan().fresh == {}
    (root / "a.txt").write_text("changed, and longer\n")
    assert list(scanner.scan().fresh.values()) == [b"changed, and longer\n"]


def test_odd_entries_are_skipped_with_a_note(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    os.mkfifo(root / "pipe")
    (root / "out").symlink_to("/etc/passwd")
    (root / os.fsdecode(b"bad\xff")).write_text("x")
    found = Scanner(root, MiB).scan()
    assert found.entries == {}
    notes = " | ".join(found.skipped)
    assert "pipe: not a regular file" in notes
    assert "symlink 'out'" in notes
    assert "not UTF-8" in notes


def test_ignore_patterns_and_the_cap(tmp_path: Path) -> None:
    root = tree(tmp_path / "ws")
    (root / "build").mkdir()
    (root / "build" / "big.o").write_bytes(b"x" * 100)
    assert "build/big.o" not in Scanner(root, MiB, ("build/", "*.o")).scan().entries
    assert Scanner(root, 50).scan().over


# -- writing a tree -----------------------------------------------------------------------


def test_materialize_reproduces_a_scan(tmp_path: Path, blobs: Blobs) -> None:
    found = Scanner(tree(tmp_path / "ws"), MiB).scan()
    blobs.put(found.fresh)
    out = tmp_path / "out"
    written = materialize(out, found.entries.values(), blobs)
    assert (written.files, written.bytes) == (2, 16)
    assert Scanner(out, MiB).scan().entries == found.entries
    assert os.readlink(out / "link") == "a.txt"


def test_materialize_never_writes_through_a_link(tmp_path: Path, blobs: Blobs) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "d").symlink_to(outside)
    data = b"x"
    blobs.put({sha(data): data})
    entry = WorkspaceChange(path="d/f", kind="file", mode=0o644, hash=sha(data), size=1)
    materialize(out, [entry], blobs)
    assert list(outside.iterdir()) == []
    assert (out / "d" / "f").read_bytes() == b"x" and not (out / "d").is_symlink()


@pytest.mark.parametrize(
    "entry",
    [
        WorkspaceChange(path="../escape", kind="file", mode=0o644, hash=sha(b""), size=0),
        WorkspaceChange(path="/abs", kind="dir", mode=0o755),
        WorkspaceChange(path="l", kind="link", target="../../etc"),
    ],
)
def test_materialize_refuses_bad_entries(tmp_path: Path, blobs: Blobs, entry: Any) -> None:
    blobs.put({sha(b""): b""})
    with pytest.raises(WorkspaceError, match="refused"):
        materialize(tmp_path / "out", [entry], blobs)
    assert not (tmp_path / "escape").exists()


def test_a_missing_blob_is_named_and_nothing_is_written(tmp_path: Path, blobs: Blobs) -> None:
    entry = WorkspaceChange(path="f", kind="file", mode=0o644, hash=sha(b"gone"), size=4)
    with pytest.raises(WorkspaceError, match="is missing"):
        materialize(tmp_path / "out", [entry], blobs)
    assert not (tmp_path / "out").exists()


def test_a_corrupt_blob_is_refused(blobs: Blobs) -> None:
    blobs.put({sha(b"right"): b"wrong"})
    with pytest.raises(WorkspaceError, match="corrupt"):
        blobs.get_many([sha(b"right")])


# -- checkpoints --------------------------------------------------------------------------


def test_checkpoint_stores_before_it_returns_and_costs_nothing_unchanged(
    tmp_path: Path, blobs: Blobs
) -> None:
    root = tree(tmp_path / "ws")
    cp = Checkpoint(root, blobs, {}, MiB, ())
    event, note = cp.step()
    assert event is not None and note == ""
    if blobs.inline:  # the commit script stores them, in the same round trip
        assert cp.inline[sha(b"hello\n")] == b"hello\n"
    else:
        assert cp.inline == {}
        assert blobs.get_many([sha(b"hello\n")]) == {sha(b"hello\n"): b"hello\n"}
    landed(cp, event)
    assert cp.step() == (None, "")
    (root / "a.txt").unlink()
    event, _ = cp.step()
    assert event is not None
    assert [(c.path, c.kind) for c in event.changes] == [("a.txt", "deleted")]


def test_restore_brings_a_fresh_host_to_the_manifest(tmp_path: Path, blobs: Blobs) -> None:
    first = Checkpoint(tree(tmp_path / "one"), blobs, {}, MiB, ())
    event, _ = first.step()
    assert event is not None
    landed(first, event)
    other = tmp_path / "two"
    other.mkdir()
    (other / "stale.txt").write_text("from an attempt that never committed")
    told: list[int] = []
    done = Checkpoint(other, blobs, first.manifest, MiB, ()).restore(told.append)
    assert done is not None and (done.files, done.removed) == (2, 1)
    assert told == [len(first.manifest)]  # followers are told before anything is written
    assert "workspace restored: 2 files" in done.line()
    assert Scanner(other, MiB).scan().entries == first.manifest
    assert Checkpoint(other, blobs, first.manifest, MiB, ()).restore(told.append) is None
    assert len(told) == 1  # nothing to restore, nothing said


def test_over_the_cap_the_run_is_told_once(tmp_path: Path, blobs: Blobs) -> None:
    root = tree(tmp_path / "ws")
    cp = Checkpoint(root, blobs, {}, 10, ())
    event, note = cp.step()
    assert event is not None and event.changes == [] and event.note
    assert "no longer carried across hosts" in note
    landed(cp, event)
    assert cp.step() == (None, "")


# -- pull ---------------------------------------------------------------------------------


def test_pull_refuses_a_non_empty_dir_and_a_file(tmp_path: Path, blobs: Blobs) -> None:
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x").write_text("mine")
    with pytest.raises(BadInput, match="is not empty"):
        access.pull({}, str(busy), blobs, force=False)
    with pytest.raises(BadInput, match="not a directory"):
        access.pull({}, str(busy / "x"), blobs, force=True)
    access.pull({}, str(busy), blobs, force=True)
    assert (busy / "x").read_text() == "mine"


def test_upload_refuses_what_is_not_a_directory(tmp_path: Path, blobs: Blobs) -> None:
    with pytest.raises(BadInput, match="not a directory"):
        access.upload(str(tmp_path / "nope"), blobs, MiB, ())
    with pytest.raises(BadInput, match="RUNNER_WORKSPACE_MAX_BYTES"):
        access.upload(str(tree(tmp_path / "ws")), blobs, 4, ())


def test_modes_survive(tmp_path: Path, blobs: Blobs) -> None:
    found = Scanner(tree(tmp_path / "ws"), MiB).scan()
    blobs.put(found.fresh)
    materialize(tmp_path / "out", found.entries.values(), blobs)
    assert stat.S_IMODE((tmp_path / "out" / "run.sh").stat().st_mode) == 0o755


def test_a_read_only_directory_comes_back_read_only(tmp_path: Path, blobs: Blobs) -> None:
    root = tree(tmp_path / "ws")
    (root / "d" / "empty" / "kept.txt").write_text("kept\n")
    (root / "d" / "empty").chmod(0o555)
    found = Scanner(root, MiB).scan()
    blobs.put(found.fresh)
    out = tmp_path / "out"
    materialize(out, found.entries.values(), blobs)
    assert stat.S_IMODE((out / "d" / "empty").stat().st_mode) == 0o555
    assert (out / "d" / "empty" / "kept.txt").read_text() == "kept\n"
    assert Scanner(out, MiB).scan().entries == found.entries
    for d in (root, out):
        (d / "d" / "empty").chmod(0o755)  # so that tmp_path can be cleaned up


# -- watched scans ------------------------------------------------------------------------


def test_a_watched_scan_lists_nothing_when_nothing_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tree(tmp_path / "ws")
    scanner = Scanner(root, MiB, watch=True)
    scanner.scan()
    looked: list[str] = []
    real_scandir, real_lstat = os.scandir, os.lstat

    def scandir(path: Any) -> Any:
        looked.append(f"list {os.path.relpath(path, root)}")
        return real_scandir(path)

    def lstat(path: Any) -> Any:
        looked.append(f"lstat {os.path.relpath(path, root)}")
        return real_lstat(path)

    monkeypatch.setattr("runner.workspace.scan.os.scandir", scandir)
    monkeypatch.setattr("runner.workspace.scan.os.lstat", lstat)
    found = scanner.update()
    assert found.touched == set() and looked == []
    (root / "d" / "new.txt").write_text("x")
    found = scanner.update()
    assert found.touched == {"d/new.txt"} and "d/new.txt" in found.entries
    assert looked == ["lstat d/new.txt"]  # the one entry the write touched
    scanner.close()


def test_a_watched_scan_sees_a_burst_larger_than_one_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More events than one read of the inotify queue holds: every file is seen."""
    from runner.workspace import watch

    monkeypatch.setattr(watch, "READ_BYTES", 4096)  # a few dozen events a read
    root = tree(tmp_path / "ws")
    scanner = Scanner(root, 64 * MiB, watch=True)
    scanner.scan()
    reads: list[int] = []
    real_read = os.read

    def counted(fd: int, n: int) -> bytes:
        data = real_read(fd, n)
        reads.append(len(data))
        return data

    names = {f"d/{'n' * 200}{i:04d}" for i in range(300)}  # long names: big events
    for name in names:
        (root / name).write_text("x")
    monkeypatch.setattr("runner.workspace.watch.os.read", counted)
    found = scanner.update()
    monkeypatch.undo()
    assert found.touched is not None, "the update walked everything instead"
    assert names <= found.touched and names <= set(found.entries)
    assert len(reads) > 10, reads  # it took many reads, and stopped at a short one
    assert found.entries == Scanner(root, 64 * MiB).scan().entries
    scanner.close()


def _random_edit(rng: random.Random, root: Path, i: int) -> str:
    """One random change to the tree under ``root``; its name."""
    dirs = [root, *[p for p in root.rglob("*") if p.is_dir() and not p.is_symlink()]]
    have = [p for p in root.rglob("*") if p.is_file() and not p.is_symlink()]
    op = rng.choice(["new", "new", "edit", "rm", "mkdir", "rmtree", "mv", "mvdir", "ln", "x"])
    where = rng.choice(dirs)
    if op == "new" or (not have and op in ("edit", "rm", "mv", "x")):
        (where / f"f{i}.txt").write_text(f"file {i}\n")
    elif op == "edit":
        rng.choice(have).write_text(f"edited at {i}\n" * rng.randint(1, 3))
    elif op == "rm":
        rng.choice(have).unlink()
    elif op == "mkdir":
        (where / f"d{i}" / "deeper").mkdir(parents=True)
        (where / f"d{i}" / "deeper" / "leaf.txt").write_text("leaf\n")
    elif op == "rmtree" and where != root:
        shutil.rmtree(where)
    elif op == "mv":
        rng.choice(have).rename(rng.choice(dirs) / f"moved{i}.txt")
    elif op == "mvdir" and where != root:
        where.rename(root / f"renamed{i}")
    elif op == "ln":
        (root / f"link{i}").symlink_to(rng.choice(have).relative_to(root) if have else "gone")
    elif op == "x" and have:
        rng.choice(have).chmod(0o755)
    return op


def test_a_watched_scan_always_agrees_with_a_full_walk(tmp_path: Path) -> None:
    """Two hundred random edits, each followed by an update: never a path missed."""
    rng = random.Random(11)
    root = tmp_path / "ws"
    root.mkdir()
    scanner = Scanner(root, MiB, watch=True)
    before = dict(scanner.scan().entries)
    for i in range(200):
        op = _random_edit(rng, root, i)
        found = scanner.update()
        truth = Scanner(root, MiB).scan().entries
        assert found.entries == truth, f"after op {i} ({op})"
        if found.touched is not None:
            moved = {p for p in set(before) | set(truth) if before.get(p) != truth.get(p)}
            assert moved <= found.touched, f"after op {i} ({op}): {moved - found.touched}"
        before = dict(truth)
    scanner.close()


def test_a_step_after_a_restore_sees_every_change_to_the_restored_files(
    tmp_path: Path, blobs: Blobs
) -> None:
    first = Checkpoint(tree(tmp_path / "one"), blobs, {}, MiB, ())
    event, _ = first.step()
    assert event is not None
    landed(first, event)
    other = tmp_path / "two"
    cp = Checkpoint(other, blobs, first.manifest, MiB, ())
    assert cp.restore() is not None
    (other / "a.txt").unlink()  # the first tool, before any step has looked
    (other / "d" / "new.txt").write_text("new\n")
    event, _ = cp.step()
    assert event is not None
    assert sorted((c.path, c.kind) for c in event.changes) == [
        ("a.txt", "deleted"),
        ("d/new.txt", "file"),
    ]
    landed(cp, event)
    assert cp.step() == (None, "")
    cp.close()
