"""A run's workspace changes as a unified diff (``runner diff``), git-style headers.

Text files are diffed line by line; a file that is not UTF-8 text (or holds NUL) is
named, not dumped; mode changes, symlinks and directories get one line each. A
repository's own metadata (``.git/``, at any depth) travels with the workspace, so that a
pull is the exact checkout, but is not diffed: one line before the diff counts what changed
in it (a commit the turn made shows in the files it changed, not in git's objects).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping

from runner.events import WorkspaceChange
from runner.workspace.blobs import Blobs

BINARY_PROBE = 8192
METADATA = ".git"  # a directory of this name holds a repository's metadata


def unified(
    start: Mapping[str, WorkspaceChange], end: Mapping[str, WorkspaceChange], blobs: Blobs
) -> str:
    """The diff that turns the ``start`` workspace into ``end`` ("" if they are the same)."""
    changed = sorted(p for p in set(start) | set(end) if start.get(p) != end.get(p))
    paths = [p for p in changed if not _metadata(p)]
    meta = _metadata_line(p for p in changed if _metadata(p))
    wanted = [e.hash for p in paths for e in (start.get(p), end.get(p)) if e is not None and e.hash]
    contents = blobs.get_many(h for h in wanted if h)
    parts = [_one(p, start.get(p), end.get(p), contents) for p in paths]
    return meta + "".join(part for part in parts if part)


def _metadata(path: str) -> bool:
    """Whether ``path`` is inside (or is) a repository's metadata directory."""
    return METADATA in path.split("/")


def _metadata_line(paths: Iterable[str]) -> str:
    """One line per metadata directory with changes: how many entries, none shown."""
    counts: dict[str, int] = {}
    for path in paths:
        parts = path.split("/")
        top = "/".join(parts[: parts.index(METADATA) + 1])
        counts[top] = counts.get(top, 0) + 1
    return "".join(
        f"# {top}/: {n} {'entry' if n == 1 else 'entries'} changed (repository metadata, "
        "not shown; runner pull brings them)\n"
        for top, n in sorted(counts.items())
    )


def _one(
    path: str,
    old: WorkspaceChange | None,
    new: WorkspaceChange | None,
    contents: Mapping[str, bytes],
) -> str:
    head = f"diff --runner a/{path} b/{path}\n"
    if _kind(old) != "file" or _kind(new) != "file":
        if _kind(old) == "file" or _kind(new) == "file":
            head += _other(path, old, new)
            return head + _text(path, old, new, contents)
        return head + _other(path, old, new)
    assert old is not None and new is not None
    if old.mode != new.mode:
        head += f"old mode {old.mode or 0:o}\nnew mode {new.mode or 0:o}\n"
    if old.hash == new.hash:
        return head
    return head + _text(path, old, new, contents)


def _kind(entry: WorkspaceChange | None) -> str:
    return "none" if entry is None else entry.kind


def _other(path: str, old: WorkspaceChange | None, new: WorkspaceChange | None) -> str:
    lines = ""
    if old is not None and old.kind != "file":
        lines += f"deleted {_describe(old)}\n"
    if new is not None and new.kind != "file":
        lines += f"new {_describe(new)}\n"
    if old is None and new is not None and new.kind == "file":
        lines += f"new file mode {new.mode or 0:o}\n"
    if new is None and old is not None and old.kind == "file":
        lines += f"deleted file mode {old.mode or 0:o}\n"
    return lines


def _describe(entry: WorkspaceChange) -> str:
    if entry.kind == "link":
        return f"symlink {entry.path} -> {entry.target}"
    return f"directory {entry.path}/ mode {entry.mode or 0:o}"


def _text(
    path: str,
    old: WorkspaceChange | None,
    new: WorkspaceChange | None,
    contents: Mapping[str, bytes],
) -> str:
    before = _content(old, contents)
    after = _content(new, contents)
    if before is None or after is None:
        return f"Binary files a/{path} and b/{path} differ\n"
    lines = difflib.unified_diff(
        before.splitlines(keepends=True),
        after.splitlines(keepends=True),
        fromfile=f"a/{path}" if old is not None and old.kind == "file" else "/dev/null",
        tofile=f"b/{path}" if new is not None and new.kind == "file" else "/dev/null",
    )
    return "".join(
        line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines
    )


def _content(entry: WorkspaceChange | None, contents: Mapping[str, bytes]) -> str | None:
    """A file's text ("" for none or a non-file); None if it is binary."""
    if entry is None or entry.kind != "file" or not entry.hash:
        return ""
    data = contents[entry.hash]
    if b"\x00" in data[:BINARY_PROBE]:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None
