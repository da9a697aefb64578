"""The worker's side of a workspace: restore at attempt start, a checkpoint after each tool.

:meth:`Checkpoint.step` scans the run's directory, stores the contents the store may
not have (before the commit), and returns the :class:`WorkspaceEvent` to commit in the
same fenced script as the tool result, or None when nothing changed (then the commit
costs what it did before). :meth:`Checkpoint.committed` moves the manifest on once the
commit landed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from runner import metrics
from runner.events import WorkspaceChange, WorkspaceEvent
from runner.workspace.blobs import Blobs
from runner.workspace.manifest import Manifest, apply, changes, totals
from runner.workspace.scan import Scan, Scanner
from runner.workspace.tree import materialize, prune

MAX_SKIPPED_SHOWN = 5
INLINE_BYTES = 1 << 20  # a step's new contents up to this size ride in the commit script


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
        self.scanner = Scanner(root, max_bytes, ignore, watch=True)
        self.known = {e.hash for e in manifest.values() if e.hash}  # hashes the store holds
        self.files, self.bytes = totals(self.manifest)
        self.over = False
        self.skipped: list[str] = []
        # Contents of the last step for the commit script itself to store (a store that
        # can: the run's own Redis hash), so that a small edit stays one round trip.
        self.inline: dict[str, bytes] = {}
        # The manifest is what the scanner last saw, except at the paths a scan says it
        # touched; not so after a restore wrote behind its back, or while a step's event
        # is not committed (or failed midway): then the next step compares everything.
        self.synced = True

    def restore(self, starting: Callable[[int], None] | None = None) -> Restored | None:
        """Make the directory match the manifest; None if it already did.

        ``starting`` is told how many entries are to be written, before any is.
        """
        started = time.monotonic()
        self.root.mkdir(parents=True, exist_ok=True)
        local = self.scanner.scan()
        differ = [e for p, e in self.manifest.items() if local.entries.get(p) != e]
        extra = [p for p in local.entries if p not in self.manifest]
        if not differ and not extra:
            return None
        if starting is not None:
            starting(len(differ))
        written = materialize(self.root, differ, self.blobs)
        removed = prune(self.root, self.manifest, extra)
        self.scanner.remember(differ, written.facts)  # what was written needs no read
        self.synced = False
        return Restored(written.files, written.bytes, removed, time.monotonic() - started)

    def step(self) -> tuple[WorkspaceEvent | None, str]:
        """Scan after a tool call: the event to commit (or None) and a note for the model."""
        self.inline = {}
        everything, self.synced = not self.synced, False
        found = self.scanner.update()
        delta = self._delta(found, everything)
        if any(c.hash and c.hash not in self.known and c.hash not in found.fresh for c in delta):
            self.scanner.forget()  # a hash remembered but never stored: read it again
            found = self.scanner.scan()
            delta = self._delta(found, everything)
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
        if not delta and note is None:
            self.synced = True
            return None, "\n".join(notes)
        needed = {c.hash for c in delta if c.hash and c.hash not in self.known}
        contents = {h: found.fresh[h] for h in needed if h in found.fresh}
        if self.blobs.inline and sum(map(len, contents.values())) <= INLINE_BYTES:
            self.inline = contents
        else:
            self.blobs.put(contents)
        metrics.workspace_stored(sum(len(data) for data in contents.values()))
        files, size = self._totals_after(delta)
        event = WorkspaceEvent(
            changes=delta, files=files, bytes=size, note=note, skipped=skipped or None
        )
        return event, "\n".join(notes)

    def committed(self, event: WorkspaceEvent) -> None:
        """The event's commit landed: its changes are the manifest now."""
        self.files, self.bytes = self._totals_after(event.changes)
        apply(self.manifest, event.changes)
        self.known.update(c.hash for c in event.changes if c.hash)
        self.inline = {}
        self.synced = True

    def close(self) -> None:
        """Stop watching the directory."""
        self.scanner.close()

    def _delta(self, found: Scan, everything: bool) -> list[WorkspaceChange]:
        """What the scan changed against the manifest (only its touched paths, if named)."""
        if found.over:
            return []
        if found.touched is None or self.over or everything:
            return changes(self.manifest, found.entries)
        return changes(
            {p: e for p in found.touched if (e := self.manifest.get(p)) is not None},
            {p: e for p in found.touched if (e := found.entries.get(p)) is not None},
        )

    def _totals_after(self, delta: list[WorkspaceChange]) -> tuple[int, int]:
        files, size = self.files, self.bytes
        for change in delta:
            was = self.manifest.get(change.path)
            if was is not None and was.kind == "file":
                files, size = files - 1, size - (was.size or 0)
            if change.kind == "file":
                files, size = files + 1, size + (change.size or 0)
        return files, size
