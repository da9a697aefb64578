"""The worker's health file and ``runner worker --health``'s verdict (issue 17)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from typing import TYPE_CHECKING

from workers.health import Beacon, check

if TYPE_CHECKING:
    from pathlib import Path


def test_a_looping_worker_is_healthy_and_says_its_state(tmp_path: Path) -> None:
    path = tmp_path / "health"
    beacon = Beacon(path, "w1")
    beacon.touch("busy")
    verdict = check(path)
    assert verdict.ok, verdict
    assert verdict.message.startswith("worker w1 is busy")
    assert json.loads(path.read_text())["pid"] == os.getpid()


def test_a_worker_that_stopped_looping_is_not(tmp_path: Path) -> None:
    path = tmp_path / "health"
    Beacon(path, "w1").touch("idle")
    old = time.time() - 100
    os.utime(path, (old, old))
    verdict = check(path, max_age=30)
    assert not verdict.ok
    assert "has not looped for 100 s (state idle)" in verdict.message
    assert check(path, max_age=200).ok


def test_a_dead_or_missing_worker_is_not(tmp_path: Path) -> None:
    path = tmp_path / "health"
    assert "no worker health" in check(path).message
    assert "RUNNER_HEALTH_FILE is not set" in check(None).message
    gone = subprocess.Popen(["true"])
    gone.wait()
    path.write_text(json.dumps({"pid": gone.pid, "name": "w9", "state": "idle"}))
    assert check(path).message == f"worker w9 (pid {gone.pid}) is gone"
    path.write_text("{not json")
    assert "unreadable worker health" in check(path).message


def test_beacon_writes_at_most_twice_a_second_and_removes(tmp_path: Path) -> None:
    path = tmp_path / "health"
    beacon = Beacon(path, "w1")
    beacon.touch("idle")
    beacon.touch("busy")  # within MIN_INTERVAL: not written
    assert json.loads(path.read_text())["state"] == "idle"
    beacon.remove()
    assert not path.exists()
    Beacon(None, "w1").touch("idle")  # no path configured: nothing, no error
