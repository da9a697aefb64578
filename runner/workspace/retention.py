"""Blobs in a directory or object store outlive the runs that named them: clean them up.

A Redis store's blobs are one of the run's keys and expire with it. A ``file://`` or
fsspec store keeps ``URL/PREFIX/ID/...`` that no Redis expiry reaches, so a sweeper
removes, at most once per ``RUNNER_WORKSPACE_SWEEP_SECONDS`` across the whole fleet (a
lock key with that TTL), the run directories whose run record no longer exists. A run
younger than an hour (its id says when it was made) is never touched: ``submit
--workspace`` stores the blobs before it creates the run.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from runner.errors import BadInput
from runner.keys import created_ms, is_run_id
from runner.settings import Settings
from runner.store import RunStore

log = logging.getLogger("runner.workspace")
YOUNG_MS = 3600 * 1000  # blobs of a run this young may belong to a submit in flight


def sweep_blob_store(store: RunStore, settings: Settings, force: bool = False) -> int:
    """Remove the blob directories of runs that are gone; returns how many were removed.

    Does nothing (0) with the Redis store, or when another sweeper did it this period
    (unless ``force``).
    """
    if settings.workspace_store == "redis":
        return 0
    period_ms = int(settings.workspace_sweep_seconds * 1000)
    if not force and not store.redis.set(store.keys.blob_sweep, "1", nx=True, px=period_ms):
        return 0
    try:
        fs, base = _open(settings.workspace_store, store.keys.prefix)
        names = [str(n).rstrip("/").rsplit("/", 1)[-1] for n in fs.ls(base, detail=False)]
    except FileNotFoundError:
        return 0
    except (BadInput, OSError) as exc:
        log.warning("blob store not swept", extra={"error": str(exc)})
        return 0
    old = time.time() * 1000 - YOUNG_MS
    candidates = [n for n in names if is_run_id(n) and created_ms(n) < old]
    if not candidates:
        return 0
    pipe = store.redis.pipeline(transaction=False)
    for run_id in candidates:
        pipe.exists(store.keys.record(run_id))
    removed = 0
    for run_id, exists in zip(candidates, pipe.execute(), strict=True):
        if exists:
            continue
        try:
            fs.rm(f"{base}/{run_id}", recursive=True)
        except FileNotFoundError:
            continue  # another sweeper (forced) got there first
        except OSError as exc:
            log.warning("blobs not removed", extra={"run": run_id, "error": str(exc)})
            continue
        removed += 1
    if removed:
        log.info("expired runs' blobs removed", extra={"count": removed})
    return removed


def _open(url: str, prefix: str) -> tuple[Any, str]:
    try:
        from fsspec.core import url_to_fs  # type: ignore[import-untyped]
    except ImportError:
        raise BadInput("install fsspec (pip install 'runner[workspace]')") from None
    fs, root = url_to_fs(url)
    return fs, f"{root.rstrip('/')}/{prefix}"
