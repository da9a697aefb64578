"""Section: what workspaces cost (issue 11), as ratios beside floors, never timed asserts.

- A step that changes nothing in a 2,000-file workspace (scan + commit) vs a bare commit.
- A step that changes one 10 KB file (scan + blob + commit) vs today's commit of that step:
  the same 10 KB write, then a bare commit (and, for comparison, vs a bare commit alone).
- Restoring the workspace on a fresh host vs a bare HMGET of the same blobs: onto the
  workspace root's filesystem (what this machine's disk costs is in it), and onto a
  tmpfs (/dev/shm, when there is one), where what is left is runner's own work.
- Redis bytes after one file edited per step, vs the workspace's own bytes + the edits.
"""

from __future__ import annotations

import os
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from runner.bench.commits import WARMUP, Transcript
from runner.bench.context import Bench
from runner.bench.stats import Figure, Spread
from runner.events import Event, MessageEvent
from runner.workspace.blobs import RedisBlobs, bytes_client
from runner.workspace.checkpoint import Checkpoint

FILES = 2000
EDIT_BYTES = 10 * 1024


def _tool(i: int) -> MessageEvent:
    return MessageEvent(role="tool", content=f"ok {i}", tool_call_id=f"c{i}", name="shell")


def _fill(root: str, file_bytes: int) -> int:
    """FILES files in 40 directories, sizes spread from 1/8 to 15/8 of ``file_bytes``.

    Spread as a real tree's are: files all of one size would measure one allocator size
    class (5 KiB sits just above one) rather than what a workspace costs.
    """
    rng = random.Random(FILES)
    total = 0
    for i in range(FILES):
        d = os.path.join(root, f"d{i % 40:02d}")
        os.makedirs(d, exist_ok=True)
        size = int(file_bytes * rng.uniform(0.125, 1.875)) // 2 * 2
        with open(os.path.join(d, f"f{i:04d}.txt"), "wb") as fh:
            fh.write(os.urandom(size // 2).hex().encode())
        total += size
    return total


def _step(tr: Transcript, cp: Checkpoint) -> float:
    """One step's scan, commit and manifest update (not the bench's own bookkeeping)."""
    t0 = time.perf_counter()
    change, _ = cp.step()
    events: list[Event] = [_tool(tr.steps)]
    if change is not None:
        events.append(change)
    scanned = time.perf_counter() - t0
    took = tr.commit(events, cp.inline)
    t0 = time.perf_counter()
    if change is not None:
        cp.committed(change)
    return scanned + took + time.perf_counter() - t0


def _edit(path: str, i: int) -> None:
    """What the step's tool did: rewrite one 10 KB file."""
    with open(path, "wb") as fh:
        fh.write(f"{i:08d}".encode() * (EDIT_BYTES // 8))


def workspace_costs(b: Bench) -> list[Figure]:
    """The section's figures, on a workspace of 2,000 files (50 MB; 10 MB when quick)."""
    quick = b.plan.commit_samples < 1000
    file_bytes = (5 if quick else 25) * 1024
    root = str(b.tmp / "workspace")
    total = _fill(root, file_bytes)
    tr = Transcript.start(b)
    blobs = RedisBlobs(bytes_client(b.settings, b.redis), b.keys.blobs(tr.run_id))
    cp = Checkpoint(b.tmp / "workspace", blobs, {}, 1 << 30, ())
    _step(tr, cp)  # the first checkpoint stores everything
    # Many steps, the three kinds interleaved in one loop and their order turned each
    # time, so the machine's swings fall on both sides of each ratio alike.
    # The edit step's floor is today's commit of the same step: the tool's 10 KB write
    # (to a file beside the workspace, on the same filesystem) and then a bare commit. A
    # write leaves the kernel work that makes whatever follows it slower (on this kind of
    # disk, about as much as the commit costs); the bare commit after a bare commit alone
    # would count that against the checkpoint.
    n = max(300, b.plan.commit_samples // 2)
    bare: list[float] = []
    after_write: list[float] = []
    still: list[float] = []
    edit: list[float] = []
    edited = 0
    inside, beside = os.path.join(root, "d00", "f0000.txt"), str(b.tmp / "beside.txt")

    for i in range(WARMUP + n):
        if i % 2:
            bare.append(tr.commit([_tool(tr.steps)]))
        still.append(_step(tr, cp))
        for first in (i % 2, 1 - i % 2):  # which comes first turns each time
            if first:
                _edit(inside, i)
                edited += EDIT_BYTES
                edit.append(_step(tr, cp))
            else:
                _edit(beside, i)
                after_write.append(tr.commit([_tool(tr.steps)]))
        if not i % 2:
            bare.append(tr.commit([_tool(tr.steps)]))
    bare, after_write = bare[WARMUP:], after_write[WARMUP:]
    still, edit = still[WARMUP:], edit[WARMUP:]
    figures = [
        Figure(
            "step, nothing changed",
            "s",
            Spread.of(still),
            "bare commit",
            Spread.of(bare),
            goal="<= 1.5",
            note=f"scan of {FILES} files + the same one-EVALSHA commit; {_paired(still, bare)}",
        ),
        Figure(
            "step, one 10 KB file",
            "s",
            Spread.of(edit),
            "bare commit after the same write",
            Spread.of(after_write),
            goal="<= 2",
            note=(
                "scan + the blob inline in the same commit, against today's commit of a "
                f"step whose tool wrote 10 KB; {_paired(edit, after_write)}"
            ),
        ),
        Figure(
            "step, one 10 KB file, against a bare commit",
            "s",
            Spread.of(edit),
            "bare commit",
            Spread.of(bare),
            note=f"the same steps, against a commit that follows no write; {_paired(edit, bare)}",
        ),
    ]
    figures += _restore(b, cp, blobs, total)
    used = int(b.redis.memory_usage(b.keys.blobs(tr.run_id), samples=0) or 0)
    figures.append(
        Figure(
            "Redis bytes of the blobs",
            "B",
            Spread.of([used]),
            "workspace + edits",
            Spread.of([total + edited]),
            goal="<= 1.2",
            note=f"{2 * (WARMUP + n)} steps, one file edited in half of them",
        )
    )
    tr.finish()
    blobs.delete_run()
    shutil.rmtree(root, ignore_errors=True)
    return figures


def _paired(xs: list[float], floor: list[float]) -> str:
    """The median of the ratios of samples taken side by side (a second, steadier view)."""
    ratios = [x / f for x, f in zip(xs, floor, strict=False) if f > 0]
    return f"paired median {statistics.median(ratios):.2f}x over {len(ratios)} pairs"


def _targets(b: Bench) -> list[tuple[str, Path]]:
    """Where restores are measured: the workspace root's filesystem, and a tmpfs if any."""
    out = [("disk", b.tmp)]
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
        out.append(("tmpfs", Path(tempfile.mkdtemp(prefix="runner-bench-", dir="/dev/shm"))))
    return out


def _restore(b: Bench, cp: Checkpoint, blobs: RedisBlobs, total: int) -> list[Figure]:
    digests = sorted({e.hash for e in cp.manifest.values() if e.hash})
    files = [(e.path, e.hash or "") for e in cp.manifest.values() if e.kind == "file"]
    what = f"{FILES} files, {total / (1 << 20):.0f} MB"
    figures: list[Figure] = []
    for label, base in _targets(b):
        restores: list[float] = []
        reads: list[float] = []
        writes: list[float] = []
        for i in range(7):  # each restore beside a bare read of the same bytes
            fresh = base / f"fresh{i}"
            t0 = time.perf_counter()
            restorer = Checkpoint(fresh, blobs, cp.manifest, 1 << 30, ())
            restorer.restore()
            restores.append(time.perf_counter() - t0)
            restorer.close()
            t0 = time.perf_counter()
            contents = dict(zip(digests, blobs.redis.hmget(blobs.key, digests), strict=True))
            reads.append(time.perf_counter() - t0)
            writes.append(_bare_writes(base / f"bare{i}", files, contents))
            del contents
            shutil.rmtree(fresh, ignore_errors=True)
            shutil.rmtree(base / f"bare{i}", ignore_errors=True)
        where = "the workspace root's filesystem" if label == "disk" else f"a tmpfs ({base.parent})"
        figures += [
            Figure(
                f"restore on a fresh host, {label}",
                "s",
                Spread.of(restores),
                "bare HMGET of the bytes",
                Spread.of(reads),
                goal="<= 2",
                note=f"{what} onto {where}: scan, fetch, check, write",
            ),
            Figure(
                f"restore, {label}, against bare writes",
                "s",
                Spread.of(restores),
                "HMGET + bare file writes",
                Spread.of([r + w for r, w in zip(reads, writes, strict=True)]),
                note="the same files written by open/write/close alone, after the read",
            ),
        ]
        if base != b.tmp:
            shutil.rmtree(base, ignore_errors=True)
    return figures


def _bare_writes(root: object, files: list[tuple[str, str]], contents: dict[str, bytes]) -> float:
    """Seconds to write ``files`` under ``root`` with nothing but open, write and close."""
    base = str(root)
    for d in sorted({p.rpartition("/")[0] for p, _ in files if "/" in p}):
        os.makedirs(os.path.join(base, d), exist_ok=True)
    t0 = time.perf_counter()
    for path, digest in files:
        fd = os.open(os.path.join(base, path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, contents[digest])
        os.close(fd)
    return time.perf_counter() - t0
