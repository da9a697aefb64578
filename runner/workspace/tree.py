"""Writing a manifest to a directory (restore on a worker, ``runner pull``), safely.

Every path is checked before it is used. The store is asked whether it holds every
blob before anything is written, so a missing (purged) blob leaves the directory as it
was. Contents then come in chunks, the next one asked for before this one is written
(see ``Blobs.fetch``); each blob is checked just before it is written (its size
always, its hash when the store asks for it: see ``Blobs.trusted``), so a damaged blob
is never written: it stops the restore with an error naming it, and what was written
before it is exactly the manifest's. Directories come first, files next, symlinks last,
and every write goes through directories this code made real (a symlink in the way is
removed, never followed): nothing is written outside the target directory.
"""

from __future__ import annotations

import itertools
import os
import shutil
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from runner.errors import WorkspaceError
from runner.events import WorkspaceChange
from runner.workspace.blobs import Blobs, verified
from runner.workspace.manifest import Manifest, check_entry

Facts = tuple[int, int, int, int]  # as the scanner keeps them: size, mtime_ns, inode, mode
Progress = Callable[[int, int], None]  # (files written so far, files to write in all)


@dataclass(frozen=True)
class Written:
    """How much a materialize wrote; ``facts``: each file's lstat facts once written."""

    files: int
    bytes: int
    facts: dict[str, Facts] = field(default_factory=dict, compare=False, repr=False)


def materialize(
    root: Path,
    entries: Iterable[WorkspaceChange],
    blobs: Blobs,
    progress: Progress | None = None,
) -> Written:
    """Write ``entries`` under ``root`` (created if missing), replacing what is in the way.

    ``progress`` is told after each chunk of files lands.
    """
    todo = sorted(
        (check_entry(e) for e in entries), key=lambda e: (_order(e), e.path.count("/"), e.path)
    )
    wanted: dict[str, int] = {}  # hash -> size, in the order the files are written
    for entry in todo:
        if entry.kind == "file":
            wanted.setdefault(entry.hash or "", entry.size or 0)
    chunks = blobs.fetch(list(wanted.items()))
    first = next(chunks, None)  # a blob the store lacks fails here, before any write
    files, links = _plan(root, todo)
    count = sum(len(where) for where in files.values())
    check = _checker(blobs, wanted)
    umask = _umask()
    facts: dict[str, Facts] = {}
    for chunk in itertools.chain([first] if first is not None else [], chunks):
        _write_chunk(chunk, files, check, umask, facts)  # the next chunk is on the wire
        if progress is not None:
            progress(len(facts), count)
    for target, entry in links:  # last: no file write can go through a link made here
        _remove(target)
        os.symlink(entry.target or "", target)
    # Directories were kept writable while their entries went in; now their own modes
    # (a read-only directory comes back read-only), deepest first.
    for entry in sorted(todo, key=lambda e: -e.path.count("/")):
        if entry.kind == "dir" and entry.mode is not None and entry.mode & 0o700 != 0o700:
            os.chmod(root / entry.path, entry.mode)
    return Written(len(facts), sum(f[0] for f in facts.values()), facts)


def _plan(
    root: Path, todo: list[WorkspaceChange]
) -> tuple[dict[str, list[tuple[str, WorkspaceChange]]], list[tuple[Path, WorkspaceChange]]]:
    """Directories made (each parent real); where each hash's files go; the links."""
    root.mkdir(parents=True, exist_ok=True)
    made: set[str] = set()  # parents already made real in this call
    files: dict[str, list[tuple[str, WorkspaceChange]]] = {}  # hash -> where it goes
    links: list[tuple[Path, WorkspaceChange]] = []
    base = str(root)
    for entry in todo:
        parent = entry.path.rpartition("/")[0]
        if entry.kind == "file" and (not parent or parent in made):
            # The parent is real already: a string join, not a Path, per file.
            files.setdefault(entry.hash or "", []).append((f"{base}/{entry.path}", entry))
            continue
        target = _clear_way(root, entry.path, made)
        if entry.kind == "dir":
            _make_dir(target, entry.mode)
        elif entry.kind == "file":
            files.setdefault(entry.hash or "", []).append((str(target), entry))
        else:
            links.append((target, entry))
    return files, links


def _checker(blobs: Blobs, sizes: dict[str, int]) -> Callable[[str, bytes | None], bytes]:
    """What each fetched blob passes before it is written."""
    rehash = not blobs.trusted
    return lambda digest, data: verified(digest, data, blobs.where, sizes[digest], rehash)


def _write_chunk(
    chunk: dict[str, bytes],
    files: dict[str, list[tuple[str, WorkspaceChange]]],
    check: Callable[[str, bytes | None], bytes],
    umask: int | None,
    facts: dict[str, Facts],
) -> None:
    for digest, data in chunk.items():
        check(digest, data)
        for target, entry in files.get(digest, ()):
            facts[entry.path] = _write_file(target, data, entry.mode, umask)


def prune(root: Path, keep: Manifest, present: Iterable[str]) -> int:
    """Remove the ``present`` paths that ``keep`` does not hold; returns how many."""
    removed = 0
    for path in sorted(present, key=lambda p: -p.count("/")):
        if path not in keep:
            _remove(root / path)
            removed += 1
    return removed


_ORDER = {"dir": 0, "file": 1, "link": 2}


def _order(entry: WorkspaceChange) -> int:
    return _ORDER.get(entry.kind, 3)


def _clear_way(root: Path, path: str, made: set[str]) -> Path:
    """``root/path``, with every parent a real directory (a link or file in the way goes).

    Links are written last, so a parent made real earlier in the same call stays real.
    """
    parent = path.rpartition("/")[0]
    if not parent or parent in made:
        return root / path
    current = root
    for part in parent.split("/"):
        current = current / part
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            current.mkdir()
            continue
        if not stat.S_ISDIR(st.st_mode):
            _remove(current)
            current.mkdir()
    made.add(parent)
    return root / path


def _make_dir(target: Path, mode: int | None) -> None:
    try:
        st = os.lstat(target)
        if not stat.S_ISDIR(st.st_mode):
            _remove(target)
            target.mkdir()
    except FileNotFoundError:
        target.mkdir()
    os.chmod(target, (mode or 0o755) | 0o700)  # we must still be able to write into it


def _umask() -> int | None:
    """The process's umask, read without changing it (None where /proc cannot tell)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return None


def _write_file(target: str, data: bytes, mode: int | None, umask: int | None = None) -> Facts:
    """Create ``target`` afresh (never through a link) with ``data``; its facts.

    The file is created with its mode; only when the umask would take bits from it
    (or special bits are asked for) is it set again.
    """
    want = mode if mode is not None else 0o644
    plain = umask is not None and want & ~0o777 == 0 and want & umask == 0
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    first = want if plain else 0o600
    try:
        try:
            fd = os.open(target, flags, first)
        except FileExistsError:  # something is in the way: it goes
            _remove(Path(target))
            fd = os.open(target, flags, first)
    except OSError as exc:
        raise WorkspaceError(f"cannot write {target}: {exc.strerror}") from exc
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if not plain:
            os.fchmod(fd, want)
        st = os.fstat(fd)
    finally:
        os.close(fd)
    return (st.st_size, st.st_mtime_ns, st.st_ino, st.st_mode)


def _remove(target: Path) -> None:
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(target)
    else:
        target.unlink()
