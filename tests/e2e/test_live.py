"""Issue 12: live output reaches a follower in another process before the commit.

Real processes throughout: the server, a worker, each ``runner follow``. The scripted
model streams each step's content over its ``sleep``, so the answer is in flight for
seconds before it is committed.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.events import MessageEvent
from runner.store import RunStore
from tests.e2e.test_core import Follower, Followers, stored, submit
from tests.helpers import wait_for, write_script

WORDS = " ".join(f"word{i}" for i in range(40))


@pytest.fixture
def follow(env: dict[str, str], tmp_path: Path) -> Iterator[Followers]:
    followers = Followers(env, tmp_path)
    yield followers
    followers.stop_all()


def _deltas(f: Follower) -> list[dict[str, Any]]:
    return [e for e in f.lines() if e["type"] == "delta"]


def _answered(store: RunStore, run_id: str) -> bool:
    return any(isinstance(e, MessageEvent) and e.role == "assistant" for e in store.events(run_id))


def test_a_follower_prints_partial_text_before_the_answer_is_committed(
    cli: Any, store: RunStore, follow: Followers, tmp_path: Path
) -> None:
    script = write_script(tmp_path / "slow.json", [{"content": WORDS, "sleep": 6}])
    cli.worker("w1")
    run_id = submit(cli, script)
    follower = follow(run_id, "--json")
    wait_for(lambda: any(d["kind"] == "text" for d in _deltas(follower)), 30, what="a delta")
    assert not _answered(store, run_id), "the delta came after the commit"
    assert follower.wait(60) == 0, follower.stderr()
    printed = follower.lines()
    deltas = _deltas(follower)
    assert all(d["ephemeral"] is True and d["epoch"] >= 1 for d in deltas)
    streamed = "".join(d["text"] for d in deltas if d["kind"] == "text")
    assert WORDS.startswith(streamed) and streamed
    answer = next(i for i, e in enumerate(printed) if e.get("role") == "assistant")
    first_delta = next(i for i, e in enumerate(printed) if e["type"] == "delta")
    assert first_delta < answer and printed[answer]["content"] == WORDS
    # Committed events are exactly the stream, each once, whatever came between.
    assert [e for e in printed if e["type"] != "delta"] == stored(store, run_id)
    # Piped, the human view is a log of committed events only.
    human = cli("follow", run_id)
    assert human.returncode == 0 and "word39" in human.stdout
    assert human.stdout.count("word0 word1") == 1


def test_a_follower_killed_mid_answer_and_restarted_prints_every_committed_event_once(
    cli: Any, store: RunStore, follow: Followers, tmp_path: Path
) -> None:
    steps = [
        {
            "content": f"step {i} " + WORDS,
            "tool": "shell",
            "args": {"command": f"echo {i}"},
            "sleep": 1.5,
        }
        for i in range(3)
    ]
    steps.append({"content": "All done.", "sleep": 0.5})
    script = write_script(tmp_path / "steps.json", steps)
    cli.worker("w1")
    run_id = submit(cli, script)
    first = follow(run_id, "--json")
    wait_for(lambda: _deltas(first), 30, what="a delta")
    os.killpg(first.popen.pid, signal.SIGKILL)
    first.wait(10)
    second = follow(run_id, "--json")
    assert second.wait(60) == 0, second.stderr()
    committed = second.events()
    ids = [e["id"] for e in committed]
    assert len(ids) == len(set(ids))
    assert committed == stored(store, run_id)
    assert committed[-1]["status"] == "succeeded"
