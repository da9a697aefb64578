"""The worker's side of a workspace: restore at attempt start, a checkpoint after each tool.

:meth:`Checkpoint.step` scans the run's directory, stores the contents the store may
not have (before the commit), and returns the :class:`WorkspaceEvent` to commit in the
same fenced script as the tool result, or None when nothing changed (then the commit
costs what it did before). :meth:`Checkpoint.committed` moves the manifest on once the
commit landed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from runner import metrics
from runner.events import WorkspaceChange, WorkspaceEvent
from runner.workspace.blobs import Blobs
from runner.workspace.manifest import Manifest, apply, changes, totals
from runner.workspace.scan import Scan, Scanner
from runner.workspace.tree import materialize, prune

MAX_SKIPPED_SHOWN = 5


@dataclass(frozen=True)
class Restored:
    """What a restore did."""

    files: int
    bytes: int
    removed: int
    seconds: float

    def line(self) -> str:
        """The status line a follower sees."""
        mib = self.bytes / (1024 * 1024)
        return (
            f"workspace restored: {self.files} files, {mib:.2f} MiB "
            f"({self.removed} stale entries removed) in {self.seconds:.2f} s"
        )


def over_cap_note(limit: int) -> str:
    mib = limit / (1024 * 1024)
    return (
        f"the workspace holds more than {mib:g} MiB (RUNNER_WORKSPACE_MAX_BYTES): "
        "from here on it is no longer carried across hosts"
    )


class Checkpoint:
    """One attempt's view of its run's workspace."""

    def __init__(
        self, root: Path, blobs: Blobs, manifest: Manifest, max_bytes: int, ignore: tuple[str, ...]
    ) -> None:
        self.root = root
        self.blobs = blobs
        self.manifest = dict(manifest)
        self.max_bytes = max_bytes
        self.scanner = Scanner(root, max_bytes, ignore)
        self.known = {e.hash for e in manifest.values() if e.hash}  # hashes the store holds
        self.over = False
        self.skipped: list[str] = []

    def restore(self) -> Restored | None:
        """Make the directory match the manifest; None if it already did."""
        started = time.monotonic()
        self.root.mkdir(parents=True, exist_ok=True)
        local = self.scanner.scan()
        differ = [e for p, e in self.manifest.items() if local.entries.get(p) != e]
        extra = [p for p in local.entries if p not in self.manifest]
        if not differ and not extra:
            return None
        written = materialize(self.root, differ, self.blobs)
        removed = prune(self.root, self.manifest, extra)
        self.scanner.remember(differ)  # what was just written needs no second read
        return Restored(written.files, written.bytes, removed, time.monotonic() - started)

    def step(self) -> tuple[WorkspaceEvent | None, str]:
        """Scan after a tool call: the event to commit (or None) and a note for the model."""
        found = self.scanner.scan()
        if any(e.hash not in self.known and e.hash not in found.fresh for e in _files(found)):
            self.scanner.forget()  # a hash remembered but never stored: read it again
            found = self.scanner.scan()
        notes: list[str] = []
        note: str | None = None
        if found.over != self.over:
            self.over = found.over
            note = over_cap_note(self.max_bytes) if found.over else ""
            notes.append(note or "the workspace is under its cap again: it is carried again")
        skipped = found.skipped[:MAX_SKIPPED_SHOWN]
        if skipped and skipped != self.skipped:
            more = len(found.skipped) - len(skipped)
            notes.append(
                "not kept: " + "; ".join(skipped) + (f" (and {more} more)" if more else "")
            )
        self.skipped = skipped
        delta = [] if found.over else changes(self.manifest, found.entries)
        if not delta and note is None:
            return None, "\n".join(notes)
        needed = {c.hash for c in delta if c.hash and c.hash not in self.known}
        stored = {h: found.fresh[h] for h in needed if h in found.fresh}
        self.blobs.put(stored)
        metrics.workspace_stored(sum(len(data) for data in stored.values()))
        after = dict(self.manifest)
        apply(after, delta)
        files, size = totals(after)
        event = WorkspaceEvent(
            changes=delta, files=files, bytes=size, note=note, skipped=skipped or None
        )
        return event, "\n".join(notes)

    def committed(self, event: WorkspaceEvent) -> None:
        """The event's commit landed: its changes are the manifest now."""
        apply(self.manifest, event.changes)
        self.known.update(c.hash for c in event.changes if c.hash)


def _files(found: Scan) -> list[WorkspaceChange]:
    return [e for e in found.entries.values() if e.kind == "file"]
