"""Damage is reported, never hidden (guarantee 11), through real workers and the CLI.

A malformed entry in a shared index must not stop a worker or a sweep; a record that does
not validate lists as damaged and fails ``status`` with one line; a run whose stream is
gone fails ``transcript`` and ``follow`` (exit 1) instead of printing an empty one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from runner.store import RunStore
from tests.helpers import wait_for, write_script

BAD_ACTIVE = "../x"
BAD_QUEUED = "r" + "z" * 18  # the right length, but not the run id alphabet


def submit(cli: Any, tmp_path: Path, *extra: str) -> str:
    script = write_script(tmp_path / "final.json", [{"content": "All done."}])
    return str(cli.submit("--model", "scripted", "--script", str(script), *extra, "hello"))


def one_line_error(result: Any) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return str(lines[0])


def test_a_malformed_id_in_the_indexes_does_not_stop_a_worker(
    cli: Any, store: RunStore, tmp_path: Path
) -> None:
    worker = cli.worker("w1")
    k = store.keys
    store.redis.sadd(k.active, BAD_ACTIVE)
    store.redis.sadd(k.queued, BAD_QUEUED)
    wait_for(
        lambda: (
            not store.redis.sismember(k.active, BAD_ACTIVE)
            and not store.redis.sismember(k.queued, BAD_QUEUED)
        ),
        timeout=15,
        what="the sweeper to remove the malformed entries",
    )
    assert worker.alive(), worker.output()
    # The worker goes on working (and sweeping) as before.
    run_id = submit(cli, tmp_path)
    done = cli("follow", run_id)
    assert done.returncode == 0, done.stderr
    assert worker.alive(), worker.output()
    assert "Traceback" not in worker.output()


def test_a_damaged_record_lists_as_damaged_and_fails_status(
    cli: Any, store: RunStore, tmp_path: Path
) -> None:
    good = submit(cli, tmp_path, "--queue", "idle")
    bad = submit(cli, tmp_path, "--queue", "idle")
    store.redis.hset(store.keys.record(bad), "steps", "lots")

    listed = cli("list")
    assert listed.returncode == 0, listed.stderr
    assert "Traceback" not in listed.stderr
    rows = {line.split()[0]: line for line in listed.stdout.splitlines() if line.strip()}
    assert good in rows
    assert "damaged" in rows[bad]
    assert "damaged" not in rows[good]

    as_json = cli("list", "--json")
    assert as_json.returncode == 0, as_json.stderr
    records = {r["id"]: r for r in map(json.loads, as_json.stdout.splitlines())}
    assert records[good]["damaged"] == ""
    assert bad in records[bad]["damaged"]
    assert "steps" in records[bad]["damaged"]

    for args in (["status", bad], ["status", bad, "--json"], ["transcript", bad]):
        result = cli(*args)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        line = one_line_error(result)
        assert bad in line
        assert "steps" in line
        assert result.stdout == ""
    assert cli("status", good).returncode == 0


def test_a_run_whose_stream_is_gone_is_damaged(cli: Any, store: RunStore, tmp_path: Path) -> None:
    cli.worker("w1")
    run_id = submit(cli, tmp_path)
    done = cli("follow", run_id)
    assert done.returncode == 0, done.stderr
    store.redis.delete(store.keys.events(run_id))  # evicted under an allkeys-* policy
    assert store.get(run_id).status.value == "succeeded"  # the record still says so

    for args in (
        ["transcript", run_id],
        ["transcript", run_id, "--json"],
        ["follow", run_id],
        ["follow", run_id, "--json"],
        ["follow", run_id, "--tail", "3"],
    ):
        result = cli(*args)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        line = one_line_error(result)
        assert run_id in line
        assert "stream" in line
        assert result.stdout == "", (args, result.stdout)
