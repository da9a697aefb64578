"""Writing a manifest to a directory (restore on a worker, ``runner pull``), safely.

Every path is checked before it is used; contents are fetched (and verified) before
anything is written, so a missing blob leaves the directory as it was; directories
come first, files next, symlinks last, and every write goes through directories this
code made real (a symlink in the way is removed, never followed): nothing is written
outside the target directory.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from runner.errors import WorkspaceError
from runner.events import WorkspaceChange
from runner.workspace.blobs import Blobs
from runner.workspace.manifest import Manifest, check_entry

WRITERS = 4  # files written at once: creating a file waits on the disk, not the CPU
Facts = tuple[int, int, int, int]  # as the scanner keeps them: size, mtime_ns, inode, mode


@dataclass(frozen=True)
class Written:
    """How much a materialize wrote; ``facts``: each file's lstat facts once written."""

    files: int
    bytes: int
    facts: dict[str, Facts] = field(default_factory=dict, compare=False, repr=False)


def materialize(root: Path, entries: Iterable[WorkspaceChange], blobs: Blobs) -> Written:
    """Write ``entries`` under ``root`` (created if missing), replacing what is in the way."""
    todo = [check_entry(e) for e in entries]
    contents = blobs.get_many(e.hash or "" for e in todo if e.kind == "file")
    root.mkdir(parents=True, exist_ok=True)
    made: set[str] = set()  # parents already made real in this call
    files: list[tuple[str, WorkspaceChange]] = []
    links: list[tuple[Path, WorkspaceChange]] = []
    for entry in sorted(todo, key=lambda e: (_order(e), e.path.count("/"), e.path)):
        target = _clear_way(root, entry.path, made)
        if entry.kind == "dir":
            _make_dir(target, entry.mode)
        elif entry.kind == "file":
            files.append((str(target), entry))
        else:
            links.append((target, entry))
    with ThreadPoolExecutor(WRITERS) as pool:
        facts = dict(
            zip(
                (e.path for _, e in files),
                pool.map(lambda f: _write_file(f[0], contents[f[1].hash or ""], f[1].mode), files),
                strict=True,
            )
        )
    for target, entry in links:  # last: no file write can go through a link made here
        _remove(target)
        os.symlink(entry.target or "", target)
    # Directories were kept writable while their entries went in; now their own modes
    # (a read-only directory comes back read-only), deepest first.
    for entry in sorted(todo, key=lambda e: -e.path.count("/")):
        if entry.kind == "dir" and entry.mode is not None and entry.mode & 0o700 != 0o700:
            os.chmod(root / entry.path, entry.mode)
    return Written(len(files), sum(f[0] for f in facts.values()), facts)


def prune(root: Path, keep: Manifest, present: Iterable[str]) -> int:
    """Remove the ``present`` paths that ``keep`` does not hold; returns how many."""
    removed = 0
    for path in sorted(present, key=lambda p: -p.count("/")):
        if path not in keep:
            _remove(root / path)
            removed += 1
    return removed


def _order(entry: WorkspaceChange) -> int:
    return {"dir": 0, "file": 1, "link": 2}.get(entry.kind, 3)


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


def _write_file(target: str, data: bytes, mode: int | None) -> Facts:
    """Create ``target`` afresh (never through a link) with ``data``; its facts."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        try:
            fd = os.open(target, flags, 0o600)
        except FileExistsError:  # something is in the way: it goes
            _remove(Path(target))
            fd = os.open(target, flags, 0o600)
    except OSError as exc:
        raise WorkspaceError(f"cannot write {target}: {exc.strerror}") from exc
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fchmod(fd, mode if mode is not None else 0o644)
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
