"""What the client does with workspaces: upload a starting one, diff, pull.

Kept out of ``runner.client`` so the client's methods stay one call each.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from runner.errors import BadInput
from runner.events import Event, WorkspaceEvent
from runner.workspace import manifest as mf
from runner.workspace.blobs import Blobs
from runner.workspace.diffing import unified
from runner.workspace.scan import Scanner
from runner.workspace.tree import Progress, Written, materialize

# Called as (bytes stored so far, bytes to store in all).
UploadProgress = Callable[[int, int], None]


def upload(
    directory: str,
    blobs: Blobs,
    max_bytes: int,
    ignore: tuple[str, ...],
    progress: UploadProgress | None = None,
) -> WorkspaceEvent:
    """Store ``directory``'s contents; the event that makes them the run's start."""
    root = Path(directory)
    if not root.is_dir():
        raise BadInput(f"--workspace {directory}: not a directory")
    found = Scanner(root, max_bytes, ignore).scan()
    if found.over:
        mib = max_bytes / (1024 * 1024)
        raise BadInput(
            f"--workspace {directory}: over {mib:g} MiB (RUNNER_WORKSPACE_MAX_BYTES; "
            "RUNNER_WORKSPACE_IGNORE leaves files out)"
        )
    total = sum(len(b) for b in found.fresh.values())
    done = 0

    def step(size: int) -> None:
        nonlocal done
        done += size
        if progress is not None:
            progress(done, total)

    blobs.put(found.fresh, step)
    changes = list(found.entries.values())
    files, size = mf.totals(found.entries)
    return WorkspaceEvent(
        changes=changes, files=files, bytes=size, skipped=found.skipped[:20] or None
    )


def diff(events: list[Event], blobs: Blobs) -> str:
    """The run's changes against its start (what the submit uploaded) as a unified diff."""
    return unified(mf.fold(events, epoch_below=1), mf.fold(events), blobs)


def pull(
    manifest: mf.Manifest,
    dest: str,
    blobs: Blobs,
    force: bool,
    progress: Progress | None = None,
) -> Written:
    """Write ``manifest`` to ``dest``; refuses a non-empty ``dest`` unless ``force``.

    ``progress`` is told (files written, files in all) as they land.
    """
    target = Path(dest)
    if target.exists() or target.is_symlink():
        if not target.is_dir() or target.is_symlink():
            raise BadInput(f"{dest}: not a directory")
        if not force and _has_entries(target):
            raise BadInput(f"{dest} is not empty (use --force to write into it)")
    return materialize(target, manifest.values(), blobs, progress)


def _has_entries(directory: Path) -> bool:
    with os.scandir(directory) as entries:
        return any(True for _ in entries)
