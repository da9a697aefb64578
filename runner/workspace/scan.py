"""Scanning a workspace directory into a manifest, cheaply: hash only what may have changed.

A :class:`Scanner` keeps, per path, the ``lstat`` facts (size, mtime, inode, mode) it
last hashed a file with; a file whose facts are unchanged keeps its hash unread. It also
keeps the tree it last saw and, where inotify is available (:mod:`.watch`), a watch on
each of its directories, so :meth:`Scanner.update` after a tool call lists again only the
directories something happened in: a step that changed nothing reads the watcher's queue
and nothing else. :meth:`Scanner.scan` walks everything, and ``update`` falls back to it
whenever the watcher cannot tell.

Symlinks are recorded as links and never followed; special files (fifos, sockets,
devices), names that are not UTF-8, links that leave the workspace and files that vanish
mid-scan are skipped, each with a note. A file is read once: the bytes hashed are the
bytes stored.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pathspec

from runner.errors import WorkspaceError
from runner.events import WorkspaceChange
from runner.workspace.manifest import Manifest, check_target
from runner.workspace.watch import Watcher

Facts = tuple[int, int, int, int]  # size, mtime_ns, inode, mode


@dataclass
class Scan:
    """What one scan found.

    ``entries``: the whole tree now (the scanner's own map: read it, do not keep it).
    ``fresh``: contents read by this scan, by hash (what a store may not hold yet).
    ``touched``: the paths that may differ from the previous scan (an ``update``), or
    None when the whole tree was walked and every path may have.
    ``over``: the workspace holds more than the cap (``entries`` is then incomplete).
    """

    entries: Manifest = field(default_factory=dict)
    fresh: dict[str, bytes] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    total: int = 0
    over: bool = False
    touched: set[str] | None = None


class Scanner:
    """Scans one directory again and again, remembering what it hashed and what it saw."""

    def __init__(
        self, root: Path, max_bytes: int, ignore: tuple[str, ...] = (), watch: bool = False
    ) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.ignore = pathspec.GitIgnoreSpec.from_lines(ignore) if ignore else None
        self._cache: dict[str, tuple[Facts, WorkspaceChange]] = {}
        self._watch = watch
        self._watcher: Watcher | None = None
        self._entries: Manifest = {}
        self._children: dict[str, set[str]] = {}  # directory ("" the root) -> its entries
        # directory -> child name ("" for the directory itself) -> why it is not kept
        self._skipped: dict[str, dict[str, str]] = {}
        self._total = 0
        self._whole = False  # the last walk saw the whole tree (under the cap)

    def scan(self) -> Scan:
        """Walk the directory (which must exist) and return what it holds now."""
        if self._watch and self._watcher is None:
            self._watcher = Watcher.open(str(self.root))
        if self._watcher is not None:
            self._watcher.reset()
        found = Scan()
        cache, self._cache = self._cache, {}
        self._entries, self._children, self._skipped, self._total = {}, {}, {}, 0
        self._list("", found, cache, fresh_tree=True)
        self._whole = not found.over
        return self._result(found)

    def update(self) -> Scan:
        """What the directory holds after a tool call: only what changed is listed again."""
        dirty = self._watcher.changed() if self._watcher is not None and self._whole else None
        if dirty is None:
            return self.scan()
        found = Scan(touched=set())
        for rel_dir in sorted(dirty, key=lambda d: d.count("/")):
            if rel_dir != "" and self._entries.get(rel_dir, _NONE).kind != "dir":
                continue  # gone (or ignored) with a parent already seen to
            names = dirty[rel_dir]
            if names is None:
                self._relist(rel_dir, found)
            else:
                self._recheck(rel_dir, names, found)
        if self._total > self.max_bytes or (self._watcher is not None and self._watcher.lost):
            return self.scan()
        return self._result(found)

    def remember(
        self, entries: Iterable[WorkspaceChange], facts: Mapping[str, Facts] | None = None
    ) -> None:
        """Take the files of ``entries``, just written here, as hashed (no read next scan).

        ``facts``: their lstat facts as the writer saw them (else each is looked up).
        """
        for entry in entries:
            if entry.kind != "file":
                continue
            known = facts.get(entry.path) if facts is not None else None
            if known is None:
                try:
                    st = os.lstat(os.path.join(self.root, entry.path))
                except OSError:
                    continue
                known = (st.st_size, st.st_mtime_ns, st.st_ino, st.st_mode)
            self._cache[entry.path] = (known, entry)

    def forget(self) -> None:
        """Hash everything again on the next scan."""
        self._cache.clear()
        self._whole = False

    def close(self) -> None:
        if self._watcher is not None:
            self._watcher.close()
            self._watcher = None

    # -- the tree -----------------------------------------------------------------------

    def _result(self, found: Scan) -> Scan:
        found.entries = self._entries
        found.total = self._total
        found.skipped = [note for notes in self._skipped.values() for note in notes.values()]
        return found

    def _relist(self, rel_dir: str, found: Scan) -> None:
        before = self._children.get(rel_dir, set())
        self._list(rel_dir, found, self._cache, fresh_tree=False)
        for gone in before - self._children.get(rel_dir, set()):
            self._drop(gone, found)

    def _recheck(self, rel_dir: str, names: set[str], found: Scan) -> None:
        """Look again at only the named entries of one directory (each one touched)."""
        assert found.touched is not None
        prefix = rel_dir + "/" if rel_dir else ""
        kids = self._children.setdefault(rel_dir, set())
        skipped = self._skipped.setdefault(rel_dir, {})
        for name in names:
            rel = prefix + name
            path = os.path.join(self.root, rel)
            found.touched.add(rel)  # whatever it was: something happened to it
            notes: list[str] = []
            kept = False
            if not _utf8(name):
                notes.append(f"{rel.encode('utf-8', 'replace')!r}: name is not UTF-8")
            else:
                try:
                    st = os.lstat(path)
                except FileNotFoundError:
                    pass
                else:
                    kept = self._entry(path, rel, st, found, self._cache, notes, False)
            if kept:
                kids.add(rel)
            else:
                kids.discard(rel)
                self._drop(rel, found)
            if notes:
                skipped[name] = notes[0]
            else:
                skipped.pop(name, None)
        if not skipped:
            del self._skipped[rel_dir]

    def _list(
        self,
        rel_dir: str,
        found: Scan,
        cache: dict[str, tuple[Facts, WorkspaceChange]],
        fresh_tree: bool,
    ) -> None:
        """List one directory into the tree; a directory new to the tree is walked whole."""
        if self._watcher is not None:
            self._watcher.watch(rel_dir)  # before the listing: nothing after it is missed
        prefix = rel_dir + "/" if rel_dir else ""
        notes: dict[str, str] = {}
        kids: set[str] = set()
        try:
            with os.scandir(os.path.join(self.root, rel_dir)) as listing:
                children = list(listing)
        except FileNotFoundError:
            children = []  # removed while we walked: what is gone is gone
        except OSError as exc:
            children = []
            notes[""] = f"{prefix or '.'}: cannot list ({exc.strerror})"
        self._children[rel_dir] = kids
        for child in children:
            if found.over:
                break
            rel = prefix + child.name
            if not _utf8(child.name):
                notes[child.name] = f"{rel.encode('utf-8', 'replace')!r}: name is not UTF-8"
                continue
            try:
                st = child.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            said: list[str] = []
            if self._entry(child.path, rel, st, found, cache, said, fresh_tree):
                kids.add(rel)
            if said:
                notes[child.name] = said[0]
        if notes:
            self._skipped[rel_dir] = notes
        else:
            self._skipped.pop(rel_dir, None)

    def _entry(
        self,
        path: str,
        rel: str,
        st: os.stat_result,
        found: Scan,
        cache: dict[str, tuple[Facts, WorkspaceChange]],
        notes: list[str],
        fresh_tree: bool,
    ) -> bool:
        """Put one directory entry in the tree; whether it is kept."""
        mode = stat.S_IMODE(st.st_mode) & 0o777
        if stat.S_ISDIR(st.st_mode):
            if self._ignored(rel + "/"):
                return False
            known = self._entries.get(rel, _NONE).kind == "dir"
            self._put(rel, WorkspaceChange.model_construct(path=rel, kind="dir", mode=mode), found)
            if fresh_tree or not known:
                self._list(rel, found, cache, fresh_tree)
            return True
        if self._ignored(rel):
            return False
        if stat.S_ISLNK(st.st_mode):
            try:
                target = check_target(rel, os.readlink(path))
            except (OSError, WorkspaceError) as exc:
                notes.append(str(exc) if isinstance(exc, WorkspaceError) else rel)
                return False
            self._put(
                rel, WorkspaceChange.model_construct(path=rel, kind="link", target=target), found
            )
            return True
        if stat.S_ISREG(st.st_mode):
            return self._file(path, rel, st, mode, found, cache, notes)
        notes.append(f"{rel}: not a regular file, directory or symlink")
        return False

    def _file(
        self,
        path: str,
        rel: str,
        st: os.stat_result,
        mode: int,
        found: Scan,
        cache: dict[str, tuple[Facts, WorkspaceChange]],
        notes: list[str],
    ) -> bool:
        if self._total - _size(self._entries.get(rel)) + st.st_size > self.max_bytes:
            found.over = True
            self._total += st.st_size
            return False
        facts: Facts = (st.st_size, st.st_mtime_ns, st.st_ino, st.st_mode)
        cached = cache.get(rel)
        if cached is not None and cached[0] == facts:
            entry = cached[1]  # the same object: comparing it with the manifest is cheap
        else:
            try:
                data = _read(path)
            except FileNotFoundError:
                notes.append(f"{rel}: vanished during the scan")
                return False
            except OSError as exc:
                notes.append(f"{rel}: cannot read ({exc.strerror})")
                return False
            digest = hashlib.sha256(data).hexdigest()
            found.fresh[digest] = data
            entry = WorkspaceChange.model_construct(
                path=rel, kind="file", mode=mode, hash=digest, size=len(data)
            )
        self._cache[rel] = (facts, entry)
        self._put(rel, entry, found)
        return True

    def _put(self, rel: str, entry: WorkspaceChange, found: Scan) -> None:
        was = self._entries.get(rel)
        if was is entry:
            return
        if was is not None:
            if was.kind == "dir" and entry.kind != "dir":
                for child in self._children.pop(rel, set()):
                    self._drop(child, found)
            self._total -= _size(was)
        self._entries[rel] = entry
        self._total += _size(entry)
        if found.touched is not None and was != entry:
            found.touched.add(rel)

    def _drop(self, rel: str, found: Scan) -> None:
        was = self._entries.pop(rel, None)
        if was is None:
            return
        self._cache.pop(rel, None)
        self._total -= _size(was)
        if was.kind == "dir":
            self._skipped.pop(rel, None)
            for child in self._children.pop(rel, set()):
                self._drop(child, found)
        if found.touched is not None:
            found.touched.add(rel)

    def _ignored(self, rel: str) -> bool:
        return self.ignore is not None and self.ignore.match_file(rel)


_NONE = WorkspaceChange.model_construct(path="", kind="deleted")


def _size(entry: WorkspaceChange | None) -> int:
    """The bytes a tree entry counts against the cap (files only)."""
    return (entry.size or 0) if entry is not None and entry.kind == "file" else 0


def _utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False  # surrogate-escaped bytes that are not UTF-8
    return "\\" not in name


def _read(path: str) -> bytes:
    """A regular file's bytes, opened without following a link that replaced it."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise FileNotFoundError(path)
        data = os.read(fd, st.st_size + 1)  # one byte more than it holds: its end is seen
        if len(data) == st.st_size:
            return data
        chunks = [data]  # it grew since the fstat, or the read came back short: read on
        while chunks[-1]:
            chunks.append(os.read(fd, 1 << 20))
        return b"".join(chunks)
    finally:
        os.close(fd)
