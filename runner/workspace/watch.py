"""Which directories of a workspace changed since the last look: inotify, on Linux.

A step that changed nothing must not cost a walk of the whole tree (issue 11: a no-change
step on 2,000 files within 1.5 times a bare commit). The :class:`Watcher` holds one inotify
watch per directory of the workspace, added *before* the directory is listed, so nothing
created after the listing is missed; after a tool call, :meth:`Watcher.changed` reads the
queued events without blocking and names the directories whose entries changed. The
kernel queues an event while the writing call is still in progress, so once a tool has
returned its writes are in the queue.

When the watcher cannot tell (no inotify on this platform, the watch limit reached, the
kernel's queue overflowed, a directory moved so that the watches' paths are stale), it
says so with None and the caller walks the whole tree, which is always correct. Writes
through a shared ``mmap`` raise no event: such a change is seen at the next full walk
(a restore, or after a move or an overflow).
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
from collections.abc import Callable

log = logging.getLogger("runner.workspace")

try:  # Linux only; anywhere else every step walks the tree.
    from inotify_simple import INotify
    from inotify_simple import flags as _f

    _DIR_MASK = (
        _f.CREATE
        | _f.DELETE
        | _f.MODIFY
        | _f.ATTRIB
        | _f.CLOSE_WRITE
        | _f.MOVED_FROM
        | _f.MOVED_TO
        | _f.DELETE_SELF
        | _f.MOVE_SELF
        | _f.DONT_FOLLOW
        | _f.ONLYDIR
        | _f.EXCL_UNLINK
    )
    _LOST = _f.Q_OVERFLOW | _f.MOVE_SELF | _f.UNMOUNT
    _MOVED_DIR = (_f.MOVED_FROM | _f.MOVED_TO, _f.ISDIR)
    _IGNORED = int(_f.IGNORED)
except (ImportError, OSError):  # pragma: no cover - not Linux, or no libc inotify
    INotify = None


# One inotify event: wd, mask, cookie, name length, then the name (NUL-padded).
_HEAD = struct.Struct("iIII")
# What one read asks for: a step's events fit many times over. The kernel never splits an
# event across reads, and a read that comes back short of this emptied the queue then.
READ_BYTES = 64 * 1024


def parse(data: bytes) -> list[tuple[int, int, str]]:
    """The (wd, mask, name) of each event in ``data``, as read from an inotify descriptor."""
    out: list[tuple[int, int, str]] = []
    pos, end, head = 0, len(data), _HEAD.size
    while pos < end:
        wd, mask, _cookie, size = _HEAD.unpack_from(data, pos)
        pos += head + size
        name = data[pos - size : pos].rstrip(b"\0") if size else b""
        out.append((wd, mask, os.fsdecode(name)))
    return out


class Watcher:
    """inotify watches on every directory of one tree, by path relative to its root."""

    def __init__(self, root: str, inotify: INotify) -> None:
        self.root = root
        self._inotify = inotify
        self._paths: dict[int, str] = {}  # watch descriptor -> directory ("" is the root)
        self.lost = False  # the watches no longer tell the whole truth: walk everything

    @classmethod
    def open(cls, root: str) -> Watcher | None:
        """A watcher for the tree at ``root``, or None where inotify is unavailable."""
        if INotify is None:
            return None
        try:
            return cls(root, INotify(nonblocking=True))
        except OSError as exc:  # EMFILE: the per-user instance limit
            log.info("no inotify for the workspace: %s", exc)
            return None

    def watch(self, rel_dir: str) -> None:
        """Watch one directory (call before listing it)."""
        if self.lost:
            return
        path = os.path.join(self.root, rel_dir) if rel_dir else self.root
        try:
            wd = self._inotify.add_watch(path, _DIR_MASK)
        except OSError as exc:  # ENOSPC: max_user_watches reached; ENOENT: gone already
            if exc.errno != 2:
                log.info("workspace watch limit reached: %s", exc)
                self.lost = True
            return
        self._paths[wd] = rel_dir

    def reset(self) -> None:
        """Drop every watch (before a full walk adds them again)."""
        for wd in list(self._paths):
            with contextlib.suppress(OSError):  # already gone with its directory
                self._inotify.rm_watch(wd)
        self._paths.clear()
        self._drain(lambda *_: None)
        self.lost = False

    def changed(self) -> dict[str, set[str] | None] | None:
        """What changed since the last call: directory -> the names in it that changed
        (None: look at the whole directory again); None: walk the whole tree."""
        dirty: dict[str, set[str] | None] = {}

        def note(wd: int, mask: int, name: str, rel: str | None) -> None:
            if mask & _LOST or (mask & _MOVED_DIR[0] and mask & _MOVED_DIR[1]):
                self.lost = True
            elif mask & _IGNORED:
                self._paths.pop(wd, None)
            elif rel is None:
                return  # a watch already dropped
            elif not name:  # the directory itself: its own entry is in its parent
                dirty[rel] = None
                parent, _, own = rel.rpartition("/")
                if rel:
                    names = dirty.setdefault(parent, set())
                    if names is not None:
                        names.add(own)
            else:
                names = dirty.setdefault(rel, set())
                if names is not None:
                    names.add(name)

        self._drain(note)
        return None if self.lost else dirty

    def _drain(self, note: Callable[[int, int, str, str | None], None]) -> None:
        # One read() on the non-blocking descriptor, and more only while they come back
        # full: a step that changed one file costs one system call here.
        fd, paths = self._inotify.fileno(), self._paths
        while True:
            try:
                data = os.read(fd, READ_BYTES)
            except BlockingIOError:
                return
            for wd, mask, name in parse(data):
                note(wd, mask, name, paths.get(wd))
            if len(data) < READ_BYTES - _HEAD.size - 256:  # short of what one more could need
                return

    def close(self) -> None:
        self._inotify.close()

    def __del__(self) -> None:
        # A scanner dropped without close() (tests, a bench) gives its descriptor back.
        with contextlib.suppress(AttributeError, OSError):
            self._inotify.close()
