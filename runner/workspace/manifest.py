"""A workspace manifest: path -> entry, its path rules, and its fold from a run's stream.

A manifest maps a relative POSIX path to a :class:`WorkspaceChange` of kind file, dir or
link. Every path that comes from outside (a stream, a store, a scan) passes
:func:`check_path` before it names anything on disk, and a link target passes
:func:`check_target`: nothing ever points or writes outside the workspace.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Iterable, Mapping

from pydantic import ValidationError

from runner.errors import WorkspaceError
from runner.events import Event, WorkspaceChange, WorkspaceEvent

Manifest = dict[str, WorkspaceChange]
MAX_PATH = 4096


# A clean path, in one match (a restore checks thousands): parts of anything but NUL,
# slash and backslash, none of them empty, "." or "..". Anything else is looked at part
# by part below, for the message.
_CLEAN = re.compile(r"(?!\.\.?(?:/|$))[^/\x00\\]+(?:/(?!\.\.?(?:/|$))[^/\x00\\]+)*")


def check_path(path: str) -> str:
    """``path`` if it is a clean relative path inside the workspace, else WorkspaceError."""
    if len(path) <= MAX_PATH and _CLEAN.fullmatch(path):
        return path
    shown = repr(path[:80])
    if not path or len(path) > MAX_PATH:
        raise WorkspaceError(f"workspace path {shown} refused: empty or too long")
    if "\x00" in path or "\\" in path:
        raise WorkspaceError(f"workspace path {shown} refused: it holds NUL or a backslash")
    if path.startswith("/"):
        raise WorkspaceError(f"workspace path {shown} refused: it is absolute")
    if any(part in ("", ".", "..") for part in path.split("/")):
        raise WorkspaceError(f"workspace path {shown} refused: it has an empty, . or .. part")
    return path


def check_target(path: str, target: str) -> str:
    """A symlink target that stays inside the workspace (relative), else WorkspaceError."""
    if not target or "\x00" in target or target.startswith("/"):
        raise WorkspaceError(f"symlink {path!r} -> {target[:80]!r} refused: absolute or empty")
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
    if resolved == ".." or resolved.startswith("../"):
        raise WorkspaceError(
            f"symlink {path!r} -> {target[:80]!r} refused: it leaves the workspace"
        )
    return target


def check_entry(entry: WorkspaceChange) -> WorkspaceChange:
    """An entry safe to write: its path, and a link's target, checked."""
    check_path(entry.path)
    if entry.kind == "link":
        check_target(entry.path, entry.target or "")
    if entry.kind == "file" and not entry.hash:
        raise WorkspaceError(f"workspace file {entry.path!r} has no content hash")
    return entry


def apply(manifest: Manifest, changes: Iterable[WorkspaceChange]) -> None:
    """Apply one step's changes to ``manifest`` in place."""
    for change in changes:
        if change.kind == "deleted":
            manifest.pop(change.path, None)
        else:
            manifest[change.path] = change


def fold(events: Iterable[Event], epoch_below: int | None = None) -> Manifest:
    """The manifest a run's events describe (only epochs below ``epoch_below`` if given)."""
    manifest: Manifest = {}
    for event in events:
        if isinstance(event, WorkspaceEvent):
            if epoch_below is not None and event.epoch >= epoch_below:
                continue
            apply(manifest, event.changes)
    return manifest


def from_hash(raw: Mapping[str, str]) -> Manifest:
    """The manifest stored in a run's manifest hash; WorkspaceError if an entry is damaged."""
    manifest: Manifest = {}
    for path, value in raw.items():
        try:
            entry = WorkspaceChange.model_validate(json.loads(value))
        except (ValueError, ValidationError) as exc:
            raise WorkspaceError(f"workspace entry {path[:80]!r} is damaged: {exc}") from exc
        if entry.path != path:
            raise WorkspaceError(f"workspace entry {path[:80]!r} names another path")
        manifest[path] = check_entry(entry)
    return manifest


def changes(
    old: Mapping[str, WorkspaceChange], new: Mapping[str, WorkspaceChange]
) -> list[WorkspaceChange]:
    """What turns ``old`` into ``new``: changed or new entries, then deletions."""
    out = [e for p, e in new.items() if (was := old.get(p)) is not e and was != e]
    out += [WorkspaceChange(path=p, kind="deleted") for p in old if p not in new]
    return out


def totals(manifest: Mapping[str, WorkspaceChange]) -> tuple[int, int]:
    """(files, bytes) of a manifest."""
    files = [e for e in manifest.values() if e.kind == "file"]
    return len(files), sum(e.size or 0 for e in files)
