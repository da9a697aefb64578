"""Bad input (guarantee 8): one line on stderr, a non-zero exit, no traceback, no key touched.

The server already holds a run, so "no key touched" covers another run's keys too.
"""

from __future__ import annotations

import json
import socket
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import redis

from runner.client import Client, Submission
from runner.keys import Keys
from runner.settings import Settings
from tests.helpers import step_script, write_script

UNKNOWN_ID = "r0000000000deadbeef"  # well formed, names no run
BAD_IDS = {
    "dotdot": "../x",
    "glob": "*",
    "rq-key": "rq:queue:default",
    "empty": "",
    "10kB": "r" * 10_000,
    "unknown": UNKNOWN_ID,
}
ID_COMMANDS = {
    "follow": ["follow"],
    "status": ["status"],
    "transcript": ["transcript"],
    "cancel": ["cancel"],
    "resume": ["resume"],
    "send": ["send", "{id}", "hello"],
}


def snapshot(client: redis.Redis) -> dict[bytes, Any]:
    """Every key with its serialized value and whether it has a TTL."""
    return {key: (client.dump(key), client.pttl(key) > 0) for key in sorted(client.keys("*"))}


def assert_one_line_error(done: subprocess.CompletedProcess[str], code: int) -> None:
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr + done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: "), lines[0]
    assert len(lines[0]) < 300, "the message echoes at most a short part of the input"


@pytest.fixture
def seeded(server: Any) -> redis.Redis:
    """The server with one queued run (nobody serves its queue); returns a bytes client."""
    client = Client(Settings(redis_url=server.url))
    script = json.dumps({"steps": step_script(1)})
    client.submit(Submission("existing run", "scripted", "idle", 5, script=script))
    return server.client(decode=False)


@pytest.mark.parametrize("bad_id", list(BAD_IDS.values()), ids=list(BAD_IDS))
def test_bad_run_ids(cli: Any, seeded: redis.Redis, bad_id: str) -> None:
    before = snapshot(seeded)

    def run(args: list[str]) -> subprocess.CompletedProcess[str]:
        argv = [a.replace("{id}", bad_id) for a in args]
        return cli(*(argv if "{id}" in args else [*argv, bad_id]))

    # Each command is its own process; run them side by side to keep the suite quick.
    with ThreadPoolExecutor(len(ID_COMMANDS)) as pool:
        results = dict(zip(ID_COMMANDS, pool.map(run, ID_COMMANDS.values()), strict=True))
    for command, done in results.items():
        try:
            assert_one_line_error(done, 2)
        except AssertionError as exc:
            raise AssertionError(f"runner {command} {bad_id[:40]!r}: {exc}") from exc
        expected = "no such run" if bad_id == UNKNOWN_ID else "not a run id"
        assert expected in done.stderr, (command, done.stderr)
    assert snapshot(seeded) == before


def _submit_cases(tmp_path: Path) -> dict[str, tuple[list[str], str | None, str]]:
    """name -> (submit arguments, stdin, a phrase the message must contain)."""
    not_json = tmp_path / "not-json.json"
    not_json.write_text("steps: [this is not json")
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"steps": [{"content": "x", "sleep": -1}]}))
    good = write_script(tmp_path / "good.json", step_script(1))
    big = "x" * 2048
    scripted = ["--model", "scripted", "--script"]
    return {
        "script-not-json": ([*scripted, str(not_json), "hi"], None, "bad script"),
        "script-wrong-schema": ([*scripted, str(wrong), "hi"], None, "steps[0].sleep"),
        "scripted-without-script": (["--model", "scripted", "hi"], None, "--script"),
        "prompt-too-big": ([*scripted, str(good), big], None, "RUNNER_MAX_PROMPT_BYTES"),
        "prompt-stdin-too-big": ([*scripted, str(good), "-"], big, "RUNNER_MAX_PROMPT_BYTES"),
        "prompt-empty": ([*scripted, str(good), "   "], None, "empty"),
        "bad-queue": ([*scripted, str(good), "--queue", "a b", "hi"], None, "queue"),
        "bad-session": ([*scripted, str(good), "--session", "../x", "hi"], None, "session"),
        "unknown-model": (["--model", "nope", "hi"], None, "unknown model"),
        "usage-error": (["--max-steps", "0", "hi"], None, "--max-steps"),
    }


SUBMIT_CASES = [
    "script-not-json",
    "script-wrong-schema",
    "scripted-without-script",
    "prompt-too-big",
    "prompt-stdin-too-big",
    "prompt-empty",
    "bad-queue",
    "bad-session",
    "unknown-model",
    "usage-error",
]


@pytest.mark.parametrize("case", SUBMIT_CASES)
def test_bad_submissions(
    cli: Any, seeded: redis.Redis, env: dict[str, str], tmp_path: Path, case: str
) -> None:
    args, stdin, phrase = _submit_cases(tmp_path)[case]
    before = snapshot(seeded)
    small = {**env, "RUNNER_MAX_PROMPT_BYTES": "1024"}
    done = cli("submit", *args, input=stdin, env=small)
    assert_one_line_error(done, 2)
    assert phrase in done.stderr
    assert snapshot(seeded) == before


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    "args",
    [
        ["submit", "--model", "scripted", "--script", "{script}", "hi"],
        ["follow", UNKNOWN_ID],
        ["status", UNKNOWN_ID],
        ["list"],
        ["send", UNKNOWN_ID, "hello"],
    ],
    ids=["submit", "follow", "status", "list", "send"],
)
def test_unreachable_server(cli: Any, env: dict[str, str], tmp_path: Path, args: list[str]) -> None:
    script = write_script(tmp_path / "ok.json", step_script(1))
    url = f"redis://127.0.0.1:{_closed_port()}/0"
    argv = [a.replace("{script}", str(script)) for a in args]
    done = cli(*argv, env={**env, "RUNNER_REDIS_URL": url}, timeout=30)
    assert_one_line_error(done, 1)
    assert "cannot reach Redis" in done.stderr


@pytest.mark.parametrize(
    ("name", "value", "phrase"),
    [
        ("RUNNER_REDIS_URL", "nonsense", "RUNNER_REDIS_URL"),
        ("RUNNER_MAX_STEPS", "many", "bad configuration"),
    ],
    ids=["url", "max-steps"],
)
def test_bad_configuration(
    cli: Any, seeded: redis.Redis, env: dict[str, str], name: str, value: str, phrase: str
) -> None:
    before = snapshot(seeded)
    done = cli("list", env={**env, name: value})
    assert_one_line_error(done, 2)
    assert phrase in done.stderr
    assert snapshot(seeded) == before


def test_corrupt_event_is_one_line_naming_run_and_entry(cli: Any, seeded: redis.Redis) -> None:
    run_id = json.loads(cli("list", "--json").stdout.splitlines()[0])["id"]
    bad = seeded.xadd(
        Keys().events(run_id), {"v": "1", "type": "message", "epoch": "0", "data": "{oops"}
    )
    for command in ("follow", "transcript"):
        done = cli(command, run_id)
        assert_one_line_error(done, 1)
        assert run_id in done.stderr
        assert bad.decode() in done.stderr


@pytest.mark.parametrize("command", ["worker", "dev"])
def test_bad_queue_or_worker_name_for_local_processes(cli: Any, command: str) -> None:
    """A bad name stops the command at once; dev must not respawn a worker that refuses it."""
    assert_one_line_error(cli(command, "--queue", "a b", timeout=20), 2)
    if command == "worker":
        assert_one_line_error(cli(command, "--name", "x/../y", timeout=20), 2)
