"""Scanning a workspace directory into a manifest, cheaply: hash only what may have changed.

A :class:`Scanner` keeps, per path, the ``lstat`` facts (size, mtime, inode, mode) it
last hashed a file with; a file whose facts are unchanged keeps its hash unread, so a
step that changes nothing costs one walk of ``lstat`` calls. Symlinks are recorded as
links and never followed; special files (fifos, sockets, devices), names that are not
UTF-8, links that leave the workspace and files that vanish mid-scan are skipped, each
with a note. A file is read once: the bytes hashed are the bytes stored.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pathspec

from runner.errors import WorkspaceError
from runner.events import WorkspaceChange
from runner.workspace.manifest import Manifest, check_target

Facts = tuple[int, int, int, int]  # size, mtime_ns, inode, mode


@dataclass
class Scan:
    """What one scan found.

    ``fresh``: contents read by this scan, by hash (what a store may not hold yet).
    ``over``: the workspace holds more than the cap (``entries`` is then incomplete).
    """

    entries: Manifest = field(default_factory=dict)
    fresh: dict[str, bytes] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    total: int = 0
    over: bool = False


class Scanner:
    """Scans one directory again and again, remembering what it hashed."""

    def __init__(self, root: Path, max_bytes: int, ignore: tuple[str, ...] = ()) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.ignore = pathspec.GitIgnoreSpec.from_lines(ignore) if ignore else None
        self._cache: dict[str, tuple[Facts, WorkspaceChange]] = {}

    def scan(self) -> Scan:
        """Walk the directory (which must exist) and return what it holds now."""
        found = Scan()
        seen: dict[str, tuple[Facts, WorkspaceChange]] = {}
        self._walk(str(self.root), "", found, seen)
        self._cache = seen
        return found

    def remember(self, entries: Iterable[WorkspaceChange]) -> None:
        """Take the files of ``entries``, just written here, as hashed (no read next scan)."""
        for entry in entries:
            if entry.kind != "file":
                continue
            try:
                st = os.lstat(os.path.join(self.root, entry.path))
            except OSError:
                continue
            facts: Facts = (st.st_size, st.st_mtime_ns, st.st_ino, st.st_mode)
            self._cache[entry.path] = (facts, entry)

    def forget(self) -> None:
        """Hash everything again on the next scan."""
        self._cache.clear()

    def _walk(
        self,
        directory: str,
        prefix: str,
        found: Scan,
        seen: dict[str, tuple[Facts, WorkspaceChange]],
    ) -> None:
        try:
            with os.scandir(directory) as listing:
                children = list(listing)
        except FileNotFoundError:
            return  # removed while we walked: what is gone is gone
        except OSError as exc:
            found.skipped.append(f"{prefix or '.'}: cannot list ({exc.strerror})")
            return
        for child in children:
            if found.over:
                return
            rel = prefix + child.name
            if not _utf8(child.name):
                found.skipped.append(f"{rel.encode('utf-8', 'replace')!r}: name is not UTF-8")
                continue
            try:
                st = child.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            self._entry(child.path, rel, st, found, seen)

    def _entry(
        self,
        path: str,
        rel: str,
        st: os.stat_result,
        found: Scan,
        seen: dict[str, tuple[Facts, WorkspaceChange]],
    ) -> None:
        mode = stat.S_IMODE(st.st_mode) & 0o777
        if stat.S_ISDIR(st.st_mode):
            if self._ignored(rel + "/"):
                return
            found.entries[rel] = WorkspaceChange.model_construct(path=rel, kind="dir", mode=mode)
            self._walk(path, rel + "/", found, seen)
        elif self._ignored(rel):
            return
        elif stat.S_ISLNK(st.st_mode):
            try:
                target = check_target(rel, os.readlink(path))
            except (OSError, WorkspaceError) as exc:
                found.skipped.append(str(exc) if isinstance(exc, WorkspaceError) else rel)
                return
            found.entries[rel] = WorkspaceChange.model_construct(
                path=rel, kind="link", target=target
            )
        elif stat.S_ISREG(st.st_mode):
            self._file(path, rel, st, mode, found, seen)
        else:
            found.skipped.append(f"{rel}: not a regular file, directory or symlink")

    def _file(
        self,
        path: str,
        rel: str,
        st: os.stat_result,
        mode: int,
        found: Scan,
        seen: dict[str, tuple[Facts, WorkspaceChange]],
    ) -> None:
        if found.total + st.st_size > self.max_bytes:
            found.over = True
            found.total += st.st_size
            return
        facts: Facts = (st.st_size, st.st_mtime_ns, st.st_ino, st.st_mode)
        cached = self._cache.get(rel)
        if cached is not None and cached[0] == facts:
            entry = cached[1]  # the same object: comparing it with the manifest is cheap
        else:
            try:
                data = _read(path)
            except FileNotFoundError:
                found.skipped.append(f"{rel}: vanished during the scan")
                return
            except OSError as exc:
                found.skipped.append(f"{rel}: cannot read ({exc.strerror})")
                return
            digest = hashlib.sha256(data).hexdigest()
            found.fresh[digest] = data
            entry = WorkspaceChange.model_construct(
                path=rel, kind="file", mode=mode, hash=digest, size=len(data)
            )
        seen[rel] = (facts, entry)
        found.total += entry.size or 0
        found.entries[rel] = entry

    def _ignored(self, rel: str) -> bool:
        return self.ignore is not None and self.ignore.match_file(rel)


def _utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False  # surrogate-escaped bytes that are not UTF-8
    return "\\" not in name


def _read(path: str) -> bytes:
    """A regular file's bytes, opened without following a link that replaced it."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise FileNotFoundError(path)
        with os.fdopen(fd, "rb", closefd=False) as fh:
            return fh.read()
    finally:
        os.close(fd)
